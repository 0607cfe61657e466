// One connection to Redis, opened lazily and reopened after a failure: iotgate-api keeps one per worker
// thread, so no request waits for another's round trip and Redis being down costs each request one
// bounded connect attempt, never a crash.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "iotgate/sentinel.h"

namespace iotgate::api {

// redis://[[USER]:PASSWORD@]HOST[:PORT][/DB], as redis-cli -u (and so scripts/iotgate) takes it, or
// sentinel://[[USER]:PASSWORD@]HOST[:PORT][,HOST[:PORT]...]/MASTERNAME[/DB] (as scripts/iotgate takes it): the
// primary of MASTERNAME as those sentinels name it (a sentinel's port defaults to 26379). The credentials are the
// Redis servers'; a sentinel that asks for a password (NOAUTH) is sent the same password.
struct RedisUri {
  std::string host = "127.0.0.1";
  int port = 6379;
  std::string user, password;
  int db = 0;
  std::vector<HostPort> sentinels;  // sentinel://: host and port are not used
  std::string master_name;
};
// Throws std::invalid_argument with a reason.
RedisUri parse_redis_uri(const std::string& uri);
// For the log: "HOST:PORT", or "sentinel master NAME via HOST:PORT,...". No credentials.
std::string describe(const RedisUri& uri);

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

  // Sends the commands in one write and returns their replies in order (an error reply is a reply, except
  // READONLY, MASTERDOWN and NOREPLICAS: the server is no primary that serves now, as after a failover).
  // Throws RedisUnavailable (and drops the connection, so the next call reconnects: with sentinels, to the primary
  // they name then). A connection the server closed while it was idle (a restart, a failover) is reopened first.
  // With sentinels, at most every kSentinelCheck a call first asks them whether they still name this primary (a
  // failover that left the old one running, which takes writes until they demote it) and reconnects if not.
  std::vector<Reply> pipeline(const std::vector<std::vector<std::string>>& commands);
  Reply command(const std::vector<std::string>& argv);

  static constexpr std::chrono::milliseconds kSentinelCheck{500};

  // Where the connection goes (the primary found through the sentinels); empty host before the first connection.
  const HostPort& address() const { return at_; }

 private:
  void connect();
  void connect_to(const HostPort& at);
  // Sends and reads on the current connection as it is; throws RedisUnavailable (and drops it) when it fails.
  std::vector<Reply> exchange(const std::vector<std::vector<std::string>>& commands);
  void drop();
  RedisUri uri_;
  std::chrono::milliseconds connect_timeout_, command_timeout_;
  std::optional<SentinelResolver> sentinel_;
  std::chrono::steady_clock::time_point next_check_{};
  HostPort at_;
  redisContext* ctx_ = nullptr;
};

}  // namespace iotgate::api
