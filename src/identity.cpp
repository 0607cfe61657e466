#include "iotgate/identity.h"

#include <cstring>

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
  constexpr Flow up = Flow::device_to_platform, down = Flow::platform_to_device;
  // The fixed names by length: one comparison or three per message instead of up to thirty.
  auto is = [s](const auto& name) {
    constexpr size_t n = sizeof(name) - 1;
    return s.size() == n && std::memcmp(s.data(), name, n) == 0;
  };
  switch (s.size()) {
    case 6: if (is("uplink")) return up; break;
    case 8: if (is("downlink")) return down; break;
    case 9: if (is("model/hex")) return up; break;
    case 10: if (is("ota_notify") || is("ask_config") || is("uplink_ack")) return down; break;
    case 11:
      if (is("update_time")) return up;
      if (is("down_config")) return down;
      break;
    case 12:
      if (is("downlink_ack")) return up;
      if (is("downloadlink") || is("ask_firmware")) return down;
      break;
    case 13:
      if (is("config_report")) return up;
      if (is("model/hex_ack")) return down;
      break;
    case 14: if (is("ota_notify_ack")) return up; break;
    case 15:
      if (is("firmware_report")) return up;
      if (is("download_config") || is("update_time_ack")) return down;
      break;
    case 16: if (is("downloadlink_ack") || is("model/hex/report")) return up; break;
    case 18: if (is("model/property/ask") || is("model/property/set") || is("model/hex/downlink")) return down; break;
    case 19: if (is("firmware_report_ack")) return down; break;
    case 20: if (is("model/hex/report_ack")) return down; break;
    case 21: if (is("model/property/report")) return up; break;
    case 22: if (is("model/property/set_ack") || is("model/hex/downlink_ack")) return up; break;
    case 25:
      if (is("model/history/data/report")) return up;
      if (is("model/property/report_ack")) return down;
      break;
    case 29: if (is("model/history/data/report_ack")) return down; break;
    default: break;
  }
  // The named ones: no fixed name starts with "model/event/" or "model/service/".
  if (one_level_between(s, "model/event/", "/report") || one_level_between(s, "model/service/", "/ack")) return up;
  if (one_level_between(s, "model/event/", "/report_ack") || one_level_between(s, "model/service/", "")) return down;
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

bool device_session_allows(SessionKind kind, std::string_view prefix, Access access, TopicText topic,
                           std::string_view* suffix_out) {
  if (access == Access::unsubscribe) return true;
  // The two rules about topics outside the session's prefix.
  if (kind == SessionKind::lierda_auth && access == Access::write) return topic == kLierdaAuthTopic;
  if (kind == SessionKind::emu_gateway && access == Access::subscribe)
    return filter_within(std::string(prefix) + "ota/+/command", topic.view());
  std::optional<TopicText> rest = topic.after(prefix);
  if (!rest) return false;
  const std::string_view suffix = rest->view();
  bool allowed = false;
  switch (kind) {
    case SessionKind::lierda_auth:
      // It may subscribe to its downlink as the protocol says, but reads nothing there: the platform's replies come
      // as direct publishes, which no ACL check stops, while any ProductKey holder may open an AUTH session for any
      // NodeEui, so a read would hand that device's downlink data to them.
      allowed = suffix == "downlink" && access == Access::subscribe;
      break;
    case SessionKind::lierda_v2:
      allowed = access == Access::subscribe ? !suffix.empty()
                                            : classify_lierda_suffix(suffix) == (access == Access::write
                                                                                     ? Flow::device_to_platform
                                                                                     : Flow::platform_to_device);
      break;
    case SessionKind::krt_register:
      allowed = suffix == (access == Access::write ? kKrtRegisterPost : kKrtRegisterSet);
      break;
    case SessionKind::krt_device:
      if (suffix.empty()) break;
      if (access == Access::subscribe) {
        allowed = true;
        break;
      }
      if (suffix == kKrtRegisterPost || suffix == kKrtRegisterSet) break;
      allowed = classify_krt_suffix(suffix) ==
                (access == Access::write ? Flow::device_to_platform : Flow::platform_to_device);
      break;
    case SessionKind::emu_gateway:
      allowed = classify_emu_suffix(suffix) ==
                (access == Access::write ? Flow::device_to_platform : Flow::platform_to_device);
      break;
    case SessionKind::account:
      break;
  }
  if (allowed && suffix_out) *suffix_out = suffix;
  return allowed;
}

namespace {
// The X of a subtree rule "X/#".
std::string_view subtree_stem(const AccountRule& rule) {
  return std::string_view(rule.filter.data(), rule.filter.size() - 2);
}

// A rule of a common shape, matched by comparing a prefix (the same answers as topic_matches, which the fuzzers
// check).
bool shape_matches(const AccountRule& rule, TopicText topic) {
  switch (rule.shape) {
    case AccountRule::Shape::exact:
      return topic == rule.filter;
    case AccountRule::Shape::subtree:
      return in_subtree(subtree_stem(rule), topic);
    case AccountRule::Shape::all:
      return topic.front_or_nul() != '$';
    case AccountRule::Shape::levels:
      break;
  }
  return topic_matches(rule.filter, topic.view());
}
}  // namespace

bool in_subtree(std::string_view stem, TopicText topic) {
  auto rest = topic.after(stem);
  return rest && (rest->empty() || rest->front_or_nul() == '/');
}

std::optional<std::string_view> read_subtree_stem(const Account& account) {
  for (const AccountRule& rule : account.rules)
    if (rule.read && !rule.substitutes && rule.shape == AccountRule::Shape::subtree)
      return subtree_stem(rule);
  return std::nullopt;
}

bool account_allows(const Account& account, const char* client_id, const char* username, Access access,
                    TopicText topic) {
  if (access == Access::unsubscribe || account.superuser) return true;
  for (const AccountRule& rule : account.rules) {
    if (access == Access::write ? !rule.write : !rule.read) continue;
    if (access != Access::subscribe && !rule.substitutes) {
      if (shape_matches(rule, topic)) return true;
      continue;
    }
    std::string_view filter = rule.filter;
    std::string substituted;
    if (rule.substitutes) {
      bool ok = false;
      substituted = substitute(filter, client_id, username ? username : "", ok);
      if (!ok) continue;  // an id with + # / cannot widen a rule
      filter = substituted;
    }
    if (access == Access::subscribe ? filter_within(filter, topic.view()) : topic_matches(filter, topic.view()))
      return true;
  }
  return false;
}

}  // namespace iotgate
