// Redis Sentinel for the tests: a primary redis-server, a replica and three sentinels (quorum 2, a primary is down
// after 1 s without an answer) on free loopback ports, and a few synchronous Redis calls over hiredis. The sentinels
// are `redis-server CONF --sentinel` (what Debian's redis-sentinel runs), so only redis-server is needed.
#pragma once
#include <hiredis/hiredis.h>
#include <sys/time.h>

#include <chrono>
#include <cstdlib>
#include <deque>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "harness.h"

namespace iotgate::test {

// One command over a fresh connection to 127.0.0.1:port: the reply's strings (an array flattened, a number as its
// decimal text), or nullopt when there was no answer; an error reply is one string starting with "-".
inline std::optional<std::vector<std::string>> redis_call(int port, const std::vector<std::string>& argv,
                                                          std::chrono::milliseconds timeout = std::chrono::seconds(2)) {
  timeval tv{static_cast<time_t>(timeout.count() / 1000), static_cast<suseconds_t>((timeout.count() % 1000) * 1000)};
  std::unique_ptr<redisContext, decltype(&redisFree)> c(redisConnectWithTimeout("127.0.0.1", port, tv), redisFree);
  if (!c || c->err) return std::nullopt;
  redisSetTimeout(c.get(), tv);
  std::vector<const char*> args;
  std::vector<size_t> lens;
  for (const auto& a : argv) {
    args.push_back(a.data());
    lens.push_back(a.size());
  }
  std::unique_ptr<redisReply, decltype(&freeReplyObject)> r(
      static_cast<redisReply*>(redisCommandArgv(c.get(), static_cast<int>(argv.size()), args.data(), lens.data())),
      freeReplyObject);
  if (!r) return std::nullopt;
  std::vector<std::string> out;
  auto flatten = [&out](const redisReply* x, auto& self) -> void {
    switch (x->type) {
      case REDIS_REPLY_ARRAY:
        for (size_t i = 0; i < x->elements; ++i) self(x->element[i], self);
        break;
      case REDIS_REPLY_STRING:
      case REDIS_REPLY_STATUS:
        out.emplace_back(x->str, x->len);
        break;
      case REDIS_REPLY_ERROR:
        out.push_back("-" + std::string(x->str, x->len));
        break;
      case REDIS_REPLY_INTEGER:
        out.push_back(std::to_string(x->integer));
        break;
      default:  // nil
        break;
    }
  };
  flatten(r.get(), flatten);
  return out;
}

// Polls `done` every 50 ms until it holds or `timeout` passes; whether it held.
template <typename F>
bool eventually(F done, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (done()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

class SentinelSet {
 public:
  static constexpr const char* kMaster = "iotgate-main";

  ~SentinelSet() {
    for (auto& s : sentinels_) s.process.kill_now();
  }

  // Starts the primary, then the replica (until it is in sync), then the sentinels, and waits (60 s at most) until
  // each sentinel knows the replica and the two other sentinels, so that a failover can be agreed. Throws on failure.
  void start() {
    servers_.push_back(std::make_unique<RedisServer>());
    servers_[0]->start();
    servers_.push_back(std::make_unique<RedisServer>(
        std::vector<std::string>{"--replicaof", "127.0.0.1", std::to_string(servers_[0]->port())}));
    servers_[1]->start();
    if (!eventually([&] { return info_field(*servers_[1], "master_link_status") == "up"; }, std::chrono::seconds(30)))
      throw std::runtime_error("the replica did not sync: " + servers_[1]->log());
    for (int i = 0; i < 3; ++i) start_sentinel(i);
    for (int i = 0; i < 3; ++i) {
      bool ready = eventually(
          [&] {
            auto m = master_info(i);
            return m.count("num-slaves") && m["num-slaves"] == "1" && m["num-other-sentinels"] == "2";
          },
          std::chrono::seconds(60));
      if (!ready) throw std::runtime_error("sentinel " + std::to_string(i) + " did not see the set: " + sentinel_log(i));
    }
  }

  // 0: the first primary, 1: the first replica (roles change with a failover).
  RedisServer& server(size_t i) { return *servers_.at(i); }
  // The server the sentinels name as primary now (sentinel 0 asked first), nullptr when none of ours.
  RedisServer* primary() {
    for (int i = 0; i < 3; ++i) {
      auto port = master_port(i);
      if (!port) continue;
      for (auto& s : servers_)
        if (s->port() == *port) return s.get();
    }
    return nullptr;
  }
  // What sentinel i names as the primary's port.
  std::optional<int> master_port(int i) {
    auto a = redis_call(sentinels_.at(i).port, {"SENTINEL", "get-master-addr-by-name", kMaster});
    if (!a || a->size() != 2) return std::nullopt;
    return std::stoi((*a)[1]);
  }
  // Whether every sentinel names the server on `port` as primary.
  bool all_name(int port) {
    for (int i = 0; i < 3; ++i)
      if (master_port(i) != port) return false;
    return true;
  }
  // The first element of ROLE on a server ("master", "slave"), "" when it does not answer.
  static std::string role(const RedisServer& s) {
    auto a = redis_call(s.port(), {"ROLE"});
    return a && !a->empty() ? (*a)[0] : "";
  }
  // The names (CLIENT SETNAME) of the clients connected to a server.
  static std::vector<std::string> client_names(const RedisServer& s) {
    std::vector<std::string> names;
    auto a = redis_call(s.port(), {"CLIENT", "LIST"});
    if (!a || a->empty()) return names;
    const std::string& list = (*a)[0];
    for (size_t pos = list.find(" name="); pos != std::string::npos; pos = list.find(" name=", pos + 1)) {
      size_t start = pos + 6, end = list.find(' ', start);
      std::string name = list.substr(start, end - start);
      if (!name.empty()) names.push_back(name);
    }
    return names;
  }
  static bool has_client(const RedisServer& s, const std::string& name) {
    for (const auto& n : client_names(s))
      if (n == name) return true;
    return false;
  }
  static std::string info_field(const RedisServer& s, const std::string& field) {
    auto a = redis_call(s.port(), {"INFO", "replication"});
    if (!a || a->empty()) return "";
    const std::string& text = (*a)[0];
    size_t pos = text.find("\n" + field + ":");
    if (pos == std::string::npos) pos = text.rfind(field + ":", 0) == 0 ? 0 : std::string::npos;
    if (pos == std::string::npos) return "";
    size_t start = text.find(':', pos) + 1, end = text.find_first_of("\r\n", start);
    return text.substr(start, end - start);
  }

  int sentinel_port(int i) const { return sentinels_.at(i).port; }
  // "127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3" (plugin_opt_redis_sentinels)
  std::string sentinel_list() const {
    std::string out;
    for (const auto& s : sentinels_) out += (out.empty() ? "" : ",") + std::string("127.0.0.1:") + std::to_string(s.port);
    return out;
  }
  // sentinel://127.0.0.1:P1,.../iotgate-main/0 (the CLI's and iotgate-api's --redis)
  std::string uri() const { return "sentinel://" + sentinel_list() + "/" + kMaster + "/0"; }
  std::string sentinel_log(int i) const { return read_file(sentinels_.at(i).dir.path + "/sentinel.log"); }

 private:
  struct Sentinel {
    TempDir dir;
    int port = 0;
    Process process;
  };

  std::map<std::string, std::string> master_info(int i) {
    std::map<std::string, std::string> m;
    auto a = redis_call(sentinels_.at(i).port, {"SENTINEL", "master", kMaster});
    if (!a) return m;
    for (size_t k = 0; k + 1 < a->size(); k += 2) m[(*a)[k]] = (*a)[k + 1];
    return m;
  }

  void start_sentinel(int i) {
    sentinels_.emplace_back();
    Sentinel& s = sentinels_.back();
    const char* server = std::getenv("IOTGATE_REDIS_SERVER");
    for (int attempt = 0; attempt < 5; ++attempt) {
      s.port = free_port();
      const std::string conf = s.dir.path + "/sentinel.conf";
      std::ofstream(conf, std::ios::trunc)
          << "port " << s.port << "\nbind 127.0.0.1\ndaemonize no\ndir " << s.dir.path << "\nlogfile " << s.dir.path
          << "/sentinel.log\nsentinel resolve-hostnames no\n"
          << "sentinel monitor " << kMaster << " 127.0.0.1 " << servers_[0]->port() << " 2\n"
          << "sentinel down-after-milliseconds " << kMaster << " 1000\n"
          << "sentinel failover-timeout " << kMaster << " 4000\n"
          << "sentinel parallel-syncs " << kMaster << " 1\n";
      s.process.spawn({server && *server ? server : "redis-server", conf, "--sentinel"}, s.dir.path + "/sentinel.out");
      if (eventually([&] { return !s.process.running() || redis_call(s.port, {"PING"}).has_value(); },
                     std::chrono::seconds(10)) &&
          s.process.running())
        return;
      s.process.kill_now();
    }
    throw std::runtime_error("sentinel " + std::to_string(i) + " did not start: " + sentinel_log(i) +
                             read_file(s.dir.path + "/sentinel.out"));
  }

  std::vector<std::unique_ptr<RedisServer>> servers_;
  std::deque<Sentinel> sentinels_;  // a deque: a Sentinel (its Process) never moves
};

}  // namespace iotgate::test
