// Finding the Redis primary through Redis Sentinel (docs/deployment.md, "Redis Sentinel"), for the plugin's store
// process and iotgate-api: ask each sentinel in turn for the master's address and check with ROLE that the server
// there really is a primary, as Redis' guidelines for Sentinel clients say. Blocking hiredis calls: never on the
// broker thread.
#pragma once
#include <hiredis/hiredis.h>

#include <chrono>
#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace iotgate {

struct HostPort {
  std::string host;
  int port = 0;
  bool operator==(const HostPort&) const = default;
};
// "host:port", "[v6::addr]:port".
std::string to_string(const HostPort& at);

constexpr int kSentinelPort = 26379;

// "HOST[:PORT],HOST[:PORT],..." ("[IPV6]:PORT" for an IPv6 address; a missing port is `default_port`). nullopt with
// *why on an empty list or a bad entry.
std::optional<std::vector<HostPort>> parse_host_ports(std::string_view text, int default_port, std::string* why);

// A Sentinel master name as iotgate takes it: 1-128 printable ASCII characters, no spaces, no '/' or ','.
bool valid_master_name(std::string_view name);

// The first element of a ROLE reply ("master", "slave", "sentinel"), "" when it is none.
std::string role_of(const redisReply* reply);

class SentinelResolver {
 public:
  // password: sent (AUTH) to a sentinel that answers NOAUTH; "" for none.
  SentinelResolver(std::vector<HostPort> sentinels, std::string master_name, std::string password = "");
  ~SentinelResolver();
  SentinelResolver(const SentinelResolver&) = delete;
  SentinelResolver& operator=(const SentinelResolver&) = delete;

  // Connects to `at`, sets it up (AUTH, SELECT) and checks it is a primary (role_of, or role_is_master); true when
  // it is and the connection is kept, else false with *why (the connection is dropped).
  using TryPrimary = std::function<bool(const HostPort& at, std::string* why)>;

  // Asks the sentinels in turn, starting with the one that answered last, for the master's address and hands each
  // answer to `try_primary` until it accepts one. `timeout` bounds each connection to a sentinel and each of its
  // answers. false with *error naming what each sentinel said when none led to a primary.
  bool resolve(std::chrono::milliseconds timeout, const TryPrimary& try_primary, std::string* error);

  // Asks one sentinel; the master's address, or nullopt with *why.
  std::optional<HostPort> ask(const HostPort& sentinel, std::chrono::milliseconds timeout, std::string* why) const;

  // Whether the sentinels still name `primary`: asked of one sentinel (the one that answered last) over a connection
  // kept open between calls. A failover that leaves the old primary running does not break connections to it until
  // the sentinels demote it, seconds later, and it takes writes meanwhile: this notices the new primary at once.
  // nullopt when the sentinel could not be asked (the next call asks the next one).
  std::optional<bool> still_names(const HostPort& primary, std::chrono::milliseconds timeout);

  const std::vector<HostPort>& sentinels() const { return sentinels_; }
  const std::string& master_name() const { return master_name_; }
  const HostPort& primary() const { return primary_; }     // where the last successful resolve() led
  const HostPort& answered() const { return answered_; }   // the sentinel that named it

 private:
  std::vector<HostPort> sentinels_;
  std::string master_name_, password_;
  // Asks on an open connection (AUTH when the sentinel wants it).
  std::optional<HostPort> ask_on(redisContext* c, std::string* why) const;
  void drop_kept();

  size_t first_ = 0;  // the sentinel asked first: the last one whose answer led to a primary
  HostPort primary_, answered_;
  redisContext* kept_ = nullptr;  // still_names()'s connection, to sentinels_[kept_index_]
  size_t kept_index_ = 0;
};

}  // namespace iotgate
