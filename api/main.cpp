// iotgate-api: the HTTP API of iotgate's upgrade tasks (docs/api.md).
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>

#include "api_server.h"
#include "json_input.h"

#ifndef IOTGATE_API_SOURCE_DIR
#define IOTGATE_API_SOURCE_DIR ""
#endif

namespace {

const char* kUsage = R"(Usage: iotgate-api [--listen HOST:PORT] [--redis URI] [--prefix P] [--web DIR] [--lua-dir DIR]
                  [--max-body BYTES] [--threads N]

HTTP API of iotgate's upgrade tasks (seed 002) and of the web console (docs/api.md).
  --listen HOST:PORT  address to serve (default 127.0.0.1:8080; port 0: any free port, printed)
  --redis URI         Redis (default: $IOTGATE_REDIS, else redis://127.0.0.1:6379/0): redis://[[USER]:PASSWORD@]HOST[:PORT][/DB],
                      or sentinel://[[USER]:PASSWORD@]HOST[:PORT][,HOST[:PORT]...]/MASTERNAME[/DB] for the primary
                      that those Redis Sentinels name (asked again after a failover)
  --prefix P          key prefix (default: $IOTGATE_PREFIX, else iotgate:)
  --web DIR           static files served at / (default: the web/ folder of the source tree if it
                      exists; --web '' serves none)
  --lua-dir DIR       the CLI's Lua scripts (default: $IOTGATE_LUA_DIR, else scripts/lua of the source tree)
  --max-body BYTES    largest request body (default 1048576); larger ones get 413
  --threads N         worker threads, each serving one connection at a time with its own Redis
                      connection (default 64)
Requests carry an Access-Token made by "scripts/iotgate token add --member NAME".
SIGTERM or SIGINT stops it.
)";

[[noreturn]] void usage_error(const std::string& msg) {
  std::fprintf(stderr, "iotgate-api: %s (see --help)\n", msg.c_str());
  std::exit(2);
}

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace iotgate::api;
  ApiOptions opt;
  std::string listen = "127.0.0.1:8080";
  std::string redis_uri = env_or("IOTGATE_REDIS", "redis://127.0.0.1:6379/0");
  opt.prefix = env_or("IOTGATE_PREFIX", "iotgate:");
  std::string source = IOTGATE_API_SOURCE_DIR;
  opt.lua_dir = env_or("IOTGATE_LUA_DIR", source + "/scripts/lua");
  std::error_code ec;
  if (!source.empty() && std::filesystem::is_directory(source + "/web", ec)) opt.web_dir = source + "/web";

  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i], value;
    if (a == "-h" || a == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (auto eq = a.find('='); a.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = a.substr(eq + 1);
      a.resize(eq);
    } else if (a.rfind("--", 0) == 0) {
      if (i + 1 >= argc) usage_error("option " + a + " needs a value");
      value = argv[++i];
    } else {
      usage_error("unexpected argument " + a);
    }
    try {
      if (a == "--listen") listen = value;
      else if (a == "--redis") redis_uri = value;
      else if (a == "--prefix") opt.prefix = value;
      else if (a == "--web") opt.web_dir = value;
      else if (a == "--lua-dir") opt.lua_dir = value;
      else if (a == "--max-body") opt.max_body = static_cast<size_t>(bounded_integer(value, 1, 1LL << 32, "--max-body"));
      else if (a == "--threads") opt.threads = static_cast<size_t>(bounded_integer(value, 1, 1024, "--threads"));
      else usage_error("unknown option " + a);
    } catch (const ApiError& e) {
      usage_error(e.what());
    }
  }
  auto colon = listen.rfind(':');
  if (colon == std::string::npos || colon == 0) usage_error("--listen: HOST:PORT");
  opt.host = listen.substr(0, colon);
  if (opt.host.size() >= 2 && opt.host.front() == '[' && opt.host.back() == ']') opt.host = opt.host.substr(1, opt.host.size() - 2);
  try {
    opt.port = static_cast<int>(bounded_integer(listen.substr(colon + 1), 0, 65535, "--listen port"));
    opt.redis = parse_redis_uri(redis_uri);
  } catch (const std::exception& e) {
    usage_error(e.what());
  }
  if (opt.prefix.empty() || opt.prefix.find_first_of(" \t\r\n") != std::string::npos)
    usage_error("invalid prefix: non-empty, printable, no spaces");

  // SIGTERM / SIGINT go to one thread that stops the server; every other thread blocks them. A client
  // that goes away mid-response must not kill the server with SIGPIPE.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  try {
    ApiServer server(opt);
    if (!server.bind()) {
      std::fprintf(stderr, "iotgate-api: cannot listen on %s\n", listen.c_str());
      return 1;
    }
    std::fprintf(stderr, "iotgate-api: listening on %s:%d (redis %s, prefix %s)\n", opt.host.c_str(), server.port(),
                 describe(opt.redis).c_str(), opt.prefix.c_str());
    std::atomic<bool> signalled{false}, done{false};
    std::thread waiter([&] {
      int sig = 0;
      sigwait(&stop_signals, &sig);
      if (done) return;  // woken by the main thread below
      signalled = true;
      std::fprintf(stderr, "iotgate-api: %s, stopping\n", sig == SIGTERM ? "SIGTERM" : "SIGINT");
      server.stop();
    });
    server.run();
    done = true;
    // run() ended without a signal (the listening socket failed): wake the waiter so it can be joined
    if (!signalled) pthread_kill(waiter.native_handle(), SIGTERM);
    waiter.join();
    std::fprintf(stderr, "iotgate-api: stopped\n");
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "iotgate-api: %s\n", e.what());
    return 1;
  }
}
