#include "iotgate/identity.h"

#include "iotgate/ids.h"
#include "iotgate/topic.h"

namespace iotgate {
namespace {
// One topic level: non-empty, no wildcard, no separator.
bool is_level(std::string_view s) {
  return !s.empty() && s.find_first_of("/+#") == std::string_view::npos && s.find('\0') == std::string_view::npos;
}
bool starts_with(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }
bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}
// Matches "model/event/{id}/report" style: head + one level + tail (tail may be empty).
bool one_level_between(std::string_view s, std::string_view head, std::string_view tail) {
  if (!starts_with(s, head) || !ends_with(s, tail) || s.size() < head.size() + tail.size()) return false;
  return is_level(s.substr(head.size(), s.size() - head.size() - tail.size()));
}
// Every level non-empty and free of wildcards.
bool all_levels(std::string_view s) {
  while (true) {
    size_t slash = s.find('/');
    if (!is_level(s.substr(0, slash))) return false;
    if (slash == std::string_view::npos) return true;
    s.remove_prefix(slash + 1);
  }
}
bool is_any_of(std::string_view s, std::initializer_list<std::string_view> names) {
  for (auto n : names)
    if (s == n) return true;
  return false;
}
std::string substitute(std::string_view filter, std::string_view client_id, std::string_view username, bool& ok) {
  std::string out;
  out.reserve(filter.size() + 32);
  ok = true;
  for (size_t i = 0; i < filter.size(); ++i) {
    if (filter[i] == '%' && i + 1 < filter.size() && (filter[i + 1] == 'u' || filter[i + 1] == 'c')) {
      std::string_view value = filter[i + 1] == 'u' ? username : client_id;
      if (!is_topic_level_safe(value)) ok = false;
      out.append(value);
      ++i;
    } else {
      out.push_back(filter[i]);
    }
  }
  return out;
}
}  // namespace

const char* to_string(SessionKind kind) {
  switch (kind) {
    case SessionKind::lierda_auth: return "lierda-auth";
    case SessionKind::lierda_v2: return "lierda-v2";
    case SessionKind::krt_register: return "krt-register";
    case SessionKind::krt_device: return "krt-device";
    case SessionKind::emu_gateway: return "emu-gateway";
    case SessionKind::account: return "account";
  }
  return "?";
}

Flow classify_lierda_suffix(std::string_view s) {
  if (is_any_of(s, {"firmware_report", "ota_notify_ack", "config_report", "update_time", "uplink", "downlink_ack",
                    "downloadlink_ack", "model/property/report", "model/property/set_ack", "model/history/data/report",
                    "model/hex/report", "model/hex/downlink_ack", "model/hex"}))
    return Flow::device_to_platform;
  if (one_level_between(s, "model/event/", "/report") || one_level_between(s, "model/service/", "/ack"))
    return Flow::device_to_platform;
  if (is_any_of(s, {"downlink", "downloadlink", "firmware_report_ack", "ask_firmware", "ota_notify", "ask_config",
                    "download_config", "down_config", "update_time_ack", "uplink_ack", "model/property/ask",
                    "model/property/report_ack", "model/property/set", "model/history/data/report_ack",
                    "model/hex/report_ack", "model/hex/downlink", "model/hex_ack"}))
    return Flow::platform_to_device;
  if (one_level_between(s, "model/event/", "/report_ack") || one_level_between(s, "model/service/", ""))
    return Flow::platform_to_device;
  return Flow::none;
}

Flow classify_krt_suffix(std::string_view s) {
  if (!all_levels(s) || s.find('/') == std::string_view::npos) return Flow::none;
  if (ends_with(s, "/post")) return Flow::device_to_platform;
  if (ends_with(s, "/set")) return Flow::platform_to_device;
  return Flow::none;
}

Flow classify_emu_suffix(std::string_view s) {
  if (one_level_between(s, "ota/", "/result")) return Flow::device_to_platform;
  if (one_level_between(s, "ota/", "/command")) return Flow::platform_to_device;
  return Flow::none;
}

std::string lierda_prefix(std::string_view openid, std::string_view product, std::string_view node_eui) {
  std::string p = "/sys/";
  p.append(openid).append("/").append(product).append("/").append(node_eui).append("/");
  return p;
}
std::string krt_prefix(std::string_view product, std::string_view device) {
  std::string p = "/sys/";
  p.append(product).append("/").append(device).append("/thing/");
  return p;
}
std::string emu_prefix(std::string_view emu_namespace, std::string_view product, std::string_view device) {
  std::string p = "v1/";
  p.append(emu_namespace).append("/").append(product).append("/").append(device).append("/");
  return p;
}

bool device_session_allows(SessionKind kind, std::string_view prefix, Access access, std::string_view topic) {
  if (access == Access::unsubscribe) return true;
  bool in_prefix = starts_with(topic, prefix);
  std::string_view suffix = in_prefix ? topic.substr(prefix.size()) : std::string_view();
  switch (kind) {
    case SessionKind::lierda_auth:
      if (access == Access::write) return topic == kLierdaAuthTopic;
      return in_prefix && suffix == "downlink";
    case SessionKind::lierda_v2:
      if (!in_prefix) return false;
      if (access == Access::subscribe) return !suffix.empty();
      return classify_lierda_suffix(suffix) ==
             (access == Access::write ? Flow::device_to_platform : Flow::platform_to_device);
    case SessionKind::krt_register:
      if (!in_prefix) return false;
      return suffix == (access == Access::write ? kKrtRegisterPost : kKrtRegisterSet);
    case SessionKind::krt_device:
      if (!in_prefix || suffix.empty()) return false;
      if (access == Access::subscribe) return true;
      if (suffix == kKrtRegisterPost || suffix == kKrtRegisterSet) return false;
      return classify_krt_suffix(suffix) ==
             (access == Access::write ? Flow::device_to_platform : Flow::platform_to_device);
    case SessionKind::emu_gateway:
      if (access == Access::subscribe) return filter_within(std::string(prefix) + "ota/+/command", topic);
      if (!in_prefix) return false;
      return classify_emu_suffix(suffix) ==
             (access == Access::write ? Flow::device_to_platform : Flow::platform_to_device);
    case SessionKind::account:
      return false;
  }
  return false;
}

bool account_allows(const Account& account, const char* client_id, const char* username, Access access,
                    std::string_view topic) {
  if (access == Access::unsubscribe || account.superuser) return true;
  for (const AccountRule& rule : account.rules) {
    if (access == Access::write ? !rule.write : !rule.read) continue;
    std::string_view filter = rule.filter;
    std::string substituted;
    if (rule.substitutes) {
      bool ok = false;
      substituted = substitute(filter, client_id, username ? username : "", ok);
      if (!ok) continue;  // an id with + # / cannot widen a rule
      filter = substituted;
    }
    if (access == Access::subscribe ? filter_within(filter, topic) : topic_matches(filter, topic)) return true;
  }
  return false;
}

}  // namespace iotgate
