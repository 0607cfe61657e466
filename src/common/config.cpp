#include "iotgate/config.h"

#include <charconv>
#include <functional>
#include <map>

namespace iotgate {
namespace {
bool parse_int(const std::string& s, int64_t lo, int64_t hi, int64_t& out) {
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && ptr == s.data() + s.size() && out >= lo && out <= hi;
}
}  // namespace

std::string describe_redis(const Config& c) {
  if (c.redis_sentinels.empty()) return to_string(HostPort{c.redis_host, c.redis_port});
  std::string out = "sentinel master " + c.redis_master_name + " via ";
  for (size_t i = 0; i < c.redis_sentinels.size(); ++i) out += (i ? "," : "") + to_string(c.redis_sentinels[i]);
  return out;
}

std::variant<Config, std::string> parse_config(const std::vector<std::pair<std::string, std::string>>& options) {
  Config c;
  using Setter = std::function<bool(const std::string&)>;
  auto integer = [](auto& field, int64_t lo, int64_t hi) {
    return Setter([&field, lo, hi](const std::string& v) {
      int64_t n = 0;
      if (!parse_int(v, lo, hi, n)) return false;
      field = static_cast<std::remove_reference_t<decltype(field)>>(n);
      return true;
    });
  };
  auto boolean = [](bool& field) {
    return Setter([&field](const std::string& v) {
      if (v != "true" && v != "false") return false;
      field = v == "true";
      return true;
    });
  };
  std::map<std::string, std::pair<Setter, const char*>> known = {
      {"redis_host", {[&](const std::string& v) { c.redis_host = v; return !v.empty(); }, "a host name or address"}},
      {"redis_port", {integer(c.redis_port, 1, 65535), "a port 1-65535"}},
      {"redis_db", {integer(c.redis_db, 0, 1000), "a database number"}},
      {"redis_password", {[&](const std::string& v) { c.redis_password = v; return true; }, "a password"}},
      {"redis_timeout_ms", {integer(c.redis_timeout_ms, 50, 60000), "milliseconds 50-60000"}},
      {"load_wait", {integer(c.load_wait, 0, 600), "seconds 0-600"}},
      {"redis_sentinels",
       {[&](const std::string& v) {
          auto list = parse_host_ports(v, kSentinelPort, nullptr);
          if (list) c.redis_sentinels = std::move(*list);
          return list.has_value();
        },
        "a list HOST:PORT,HOST:PORT,... ([ADDRESS]:PORT for IPv6; the port defaults to 26379)"}},
      {"metrics_listen",
       {[&](const std::string& v) {
          auto list = parse_host_ports(v, 0, nullptr);
          if (!list || list->size() != 1 || list->front().port == 0) return false;
          c.metrics_listen = list->front();
          return true;
        },
        "HOST:PORT ([ADDRESS]:PORT for IPv6), for example 127.0.0.1:9883"}},
      {"redis_master_name",
       {[&](const std::string& v) { c.redis_master_name = v; return valid_master_name(v); },
        "a Sentinel master name (1-128 characters, no spaces, '/', ',' or '@')"}},
      {"redis_sentinel_password", {[&](const std::string& v) { c.redis_sentinel_password = v; return true; }, "a password"}},
      {"key_prefix",
       {[&](const std::string& v) {
          c.key_prefix = v;
          return !v.empty() && v.size() <= 64 && v.find_first_of(" \t\r\n") == std::string::npos;
        },
        "1-64 characters without spaces"}},
      {"clock_skew", {integer(c.clock_skew, 0, 86400), "seconds 0-86400"}},
      {"session_key_ttl", {integer(c.session_key_ttl, 60, 365LL * 86400), "seconds 60-31536000"}},
      {"max_payload", {integer(c.max_payload, 256, 16 * 1024 * 1024), "bytes 256-16777216"}},
      {"log_burst", {integer(c.log_burst, 1, 100000), "a count 1-100000"}},
      {"log_window", {integer(c.log_window, 1, 3600), "seconds 1-3600"}},
      {"lierda_acks", {boolean(c.lierda_acks), "true or false"}},
      {"bind_account_client_ids", {boolean(c.bind_account_client_ids), "true or false"}},
      {"auth_spray_usernames", {integer(c.auth_spray_usernames, 1, 1000), "a count 1-1000"}},
      {"timezone",
       {[&](const std::string& v) {
          c.timezone = v;
          return !v.empty() && v.size() <= 64 && v.find_first_of("\"\\ ") == std::string::npos;
        },
        "an IANA zone name such as Asia/Shanghai"}},
      {"auth_fail_limit", {integer(c.auth_fail_limit, 0, 1000000), "a count 0-1000000 (0: never ban)"}},
      {"auth_fail_window", {integer(c.auth_fail_window, 1, 86400), "seconds 1-86400"}},
      {"auth_ban_seconds", {integer(c.auth_ban_seconds, 1, 7 * 86400), "seconds 1-604800"}},
      {"log_level",
       {[&](const std::string& v) {
          static const std::map<std::string, LogLevel> levels = {{"error", LogLevel::error},
                                                                 {"warning", LogLevel::warning},
                                                                 {"notice", LogLevel::notice},
                                                                 {"info", LogLevel::info},
                                                                 {"debug", LogLevel::debug}};
          auto it = levels.find(v);
          if (it == levels.end()) return false;
          c.log_level = it->second;
          return true;
        },
        "error, warning, notice, info or debug"}},
  };
  for (const auto& [name, value] : options) {
    auto it = known.find(name);
    if (it == known.end()) return "unknown option plugin_opt_" + name;
    if (!it->second.first(value)) return "plugin_opt_" + name + " must be " + it->second.second;
  }
  if (!c.redis_sentinels.empty() && c.redis_master_name.empty())
    return "plugin_opt_redis_sentinels needs plugin_opt_redis_master_name (the name the sentinels monitor)";
  if (c.redis_sentinels.empty() && !c.redis_master_name.empty())
    return "plugin_opt_redis_master_name needs plugin_opt_redis_sentinels";
  return c;
}

}  // namespace iotgate
