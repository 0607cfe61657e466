// Plugin options (plugin_opt_* lines); each is documented with its default in conf/iotgate.conf.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "iotgate/log.h"
#include "iotgate/sentinel.h"

namespace iotgate {

struct Config {
  std::string redis_host = "127.0.0.1";
  int redis_port = 6379;
  int redis_db = 0;
  std::string redis_password;
  int redis_timeout_ms = 2000;      // per command; a stalled Redis fails writes after this
  // Seconds the broker waits at start for the first load from Redis before it opens its listeners, so a fleet that
  // reconnects at once finds every device known; the wait ends early when the store process reports Redis trouble.
  // 0: open them at once (logins are refused "not loaded" until the load is in).
  int load_wait = 30;
  // Redis Sentinel (docs/deployment.md): when set, the primary of redis_master_name is found by asking these sentinels
  // (redis_host / redis_port are then not used) and found again after a failover.
  std::vector<HostPort> redis_sentinels;
  std::string redis_master_name;
  std::string redis_sentinel_password;  // sent to a sentinel that asks for one (NOAUTH)
  std::string key_prefix = "iotgate:";
  int64_t clock_skew = 60;          // seconds a type-1 timestamp may run ahead of our clock
  int64_t session_key_ttl = 172800; // seconds (48 h)
  size_t max_payload = 65536;       // bytes of a protocol message the plugin parses
  LogLevel log_level = LogLevel::info;
  int log_burst = 20;               // refusal lines per reason per log_window before suppression
  int log_window = 10;              // seconds
  bool lierda_acks = true;          // answer Lierda reports (uplink, model/..., update_time) with their acks
  std::string timezone = "Asia/Shanghai";  // sent in Lierda time sync answers
  int auth_fail_limit = 30;         // failed logins within auth_fail_window before a ban (see auth_spray_usernames)
  int64_t auth_fail_window = 60;    // seconds
  int64_t auth_ban_seconds = 300;   // how long a ban lasts
  // auth_fail_limit failures of one username from one address ban that pair; the whole address is banned when its
  // failures within the window reach auth_fail_limit under at least this many usernames (spraying).
  int auth_spray_usernames = 5;
  // Service accounts log in with the client id NAME or NAME:ANYTHING (true), or any client id (false). EMU gateways
  // always do: a free client id can take over (and kick) any other client's session.
  bool bind_account_client_ids = true;
  // This broker among those sharing the Redis: not an option, made at start (random) and shared by the gate and the
  // store process, which skips the fleet announcements this broker made itself. Empty: the gate makes one.
  std::string broker_id;
  // Where the store process serves the Prometheus metrics page (metrics.h); unset: no page.
  std::optional<HostPort> metrics_listen;
};

// Where the plugin finds Redis, for the log: "HOST:PORT", or "sentinel master NAME via HOST:PORT,HOST:PORT".
std::string describe_redis(const Config& config);

// Returns the config, or a message naming the first bad option.
std::variant<Config, std::string> parse_config(const std::vector<std::pair<std::string, std::string>>& options);

}  // namespace iotgate
