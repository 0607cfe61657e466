// iotgate-api: the HTTP adapter of the upgrade-task API (seed 002) and the console's reads. Each route
// turns the request into the arguments scripts/iotgate would pass to the same Lua script, runs it,
// and turns the script's JSON (or its classed refusal) into the response. No state rule lives here.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

#include "redis_link.h"

namespace httplib {
class Server;
}

namespace iotgate::api {

struct ApiOptions {
  std::string host = "127.0.0.1";
  int port = 8080;
  RedisUri redis;
  std::string prefix = "iotgate:";
  std::string lua_dir;  // scripts/lua
  std::string web_dir;  // static files served at / ("" = none)
  size_t max_body = 1 << 20;
  size_t max_depth = 32;  // JSON nesting
  size_t threads = 64;    // worker threads = keep-alive connections served at once
  std::chrono::milliseconds redis_connect_timeout{500};
  std::chrono::milliseconds redis_command_timeout{3000};
};

class ApiServer {
 public:
  explicit ApiServer(ApiOptions options);  // reads the Lua scripts (the function library); throws std::runtime_error
  ~ApiServer();
  bool bind();  // binds host:port; false when it cannot
  int port() const;
  void run();   // serves until stop()
  void stop();  // from any thread (the signal thread)

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace iotgate::api
