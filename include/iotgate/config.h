// Plugin options (plugin_opt_* lines); each is documented with its default in conf/iotgate.conf.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "iotgate/log.h"

namespace iotgate {

struct Config {
  std::string redis_host = "127.0.0.1";
  int redis_port = 6379;
  int redis_db = 0;
  std::string redis_password;
  int redis_timeout_ms = 2000;      // per command; a stalled Redis fails writes after this
  std::string key_prefix = "iotgate:";
  int64_t clock_skew = 60;          // seconds a type-1 timestamp may run ahead of our clock
  int64_t session_key_ttl = 172800; // seconds (48 h)
  size_t max_payload = 65536;       // bytes of a protocol message the plugin parses
  LogLevel log_level = LogLevel::info;
  int log_burst = 20;               // refusal lines per reason per log_window before suppression
  int log_window = 10;              // seconds
  bool lierda_acks = true;          // answer Lierda reports (uplink, model/..., update_time) with their acks
  std::string timezone = "Asia/Shanghai";  // sent in Lierda time sync answers
  int auth_fail_limit = 30;         // failed logins from one address within auth_fail_window before it is banned
  int64_t auth_fail_window = 60;    // seconds
  int64_t auth_ban_seconds = 300;   // how long a banned address is refused without looking at its credentials
};

// Returns the config, or a message naming the first bad option.
std::variant<Config, std::string> parse_config(const std::vector<std::pair<std::string, std::string>>& options);

}  // namespace iotgate
