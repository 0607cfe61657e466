// One connection to Redis, opened lazily and reopened after a failure: iotgate-api keeps one per worker
// thread, so no request waits for another's round trip and Redis being down costs each request one
// bounded connect attempt, never a crash.
#pragma once

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

struct redisContext;
struct redisReply;

namespace iotgate::api {

// redis://[[USER]:PASSWORD@]HOST[:PORT][/DB], as redis-cli -u (and so scripts/iotgate) takes it.
struct RedisUri {
  std::string host = "127.0.0.1";
  int port = 6379;
  std::string user, password;
  int db = 0;
};
// Throws std::invalid_argument with a reason.
RedisUri parse_redis_uri(const std::string& uri);

// Redis could not be reached, or the connection broke or timed out mid-command.
struct RedisUnavailable : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct ReplyDeleter {
  void operator()(redisReply* r) const;
};
using Reply = std::unique_ptr<redisReply, ReplyDeleter>;

class RedisLink {
 public:
  RedisLink(RedisUri uri, std::chrono::milliseconds connect_timeout, std::chrono::milliseconds command_timeout);
  ~RedisLink();
  RedisLink(const RedisLink&) = delete;
  RedisLink& operator=(const RedisLink&) = delete;

  // Sends the commands in one write and returns their replies in order (an error reply is a reply).
  // Throws RedisUnavailable (and drops the connection, so the next call reconnects).
  std::vector<Reply> pipeline(const std::vector<std::vector<std::string>>& commands);
  Reply command(const std::vector<std::string>& argv);

 private:
  void connect();
  void drop();
  RedisUri uri_;
  std::chrono::milliseconds connect_timeout_, command_timeout_;
  redisContext* ctx_ = nullptr;
};

}  // namespace iotgate::api
