// The metrics page over HTTP (plugin_opt_metrics_listen), served from the store process: the core renders the
// Prometheus text (metrics.h), cpp-httplib carries it. Nothing here runs in the broker process.
#include "metrics_http.h"

#include <httplib.h>

#include <sys/socket.h>

#include <thread>

namespace iotgate {

std::optional<std::string> serve_metrics(const HostPort& at, std::function<std::string()> page) {
  auto* server = new httplib::Server;  // lives as long as the store process (it ends with _exit)
  // Prometheus scrapes with one connection at a time; two threads leave room for a curl next to it.
  server->new_task_queue = [] { return new httplib::ThreadPool(2); };
  // SO_REUSEADDR only: cpp-httplib's default also sets SO_REUSEPORT, with which two brokers configured with one port
  // would both listen and the kernel would hand each scrape to either of them.
  server->set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  server->set_read_timeout(5, 0);
  server->set_write_timeout(5, 0);
  server->Get("/metrics", [page](const httplib::Request&, httplib::Response& res) {
    res.set_content(page(), "text/plain; version=0.0.4; charset=utf-8");
  });
  server->Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("iotgate metrics: /metrics\n", "text/plain; charset=utf-8");
  });
  if (!server->bind_to_port(at.host, at.port)) {
    delete server;
    return "cannot listen there (in use, or not an address of this machine)";
  }
  std::thread([server] { server->listen_after_bind(); }).detach();
  return std::nullopt;
}

}  // namespace iotgate
