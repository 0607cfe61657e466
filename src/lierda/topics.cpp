// Lierda topics: the prefix, which way each suffix flows, and the ACL of Lierda sessions.
#include <cstring>

#include "iotgate/lierda/lierda.h"

namespace iotgate {

std::string lierda_prefix(std::string_view openid, std::string_view product, std::string_view node_eui) {
  std::string p = "/sys/";
  p.append(openid).append("/").append(product).append("/").append(node_eui).append("/");
  return p;
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

bool lierda_session_allows(SessionKind kind, std::string_view prefix, Access access, TopicText topic,
                           std::string_view* suffix_out) {
  // The one topic outside the session's prefix: the AUTH request.
  if (kind == SessionKind::lierda_auth && access == Access::write) return topic == kLierdaAuthTopic;
  std::optional<TopicText> rest = topic.after(prefix);
  if (!rest) return false;
  const std::string_view suffix = rest->view();
  bool allowed = false;
  if (kind == SessionKind::lierda_auth) {
    // It may subscribe to its downlink as the protocol says, but reads nothing there: the platform's replies come
    // as direct publishes, which no ACL check stops, while any ProductKey holder may open an AUTH session for any
    // NodeEui, so a read would hand that device's downlink data to them.
    allowed = suffix == "downlink" && access == Access::subscribe;
  } else if (kind == SessionKind::lierda_v2) {
    allowed = access == Access::subscribe ? !suffix.empty()
                                          : classify_lierda_suffix(suffix) == (access == Access::write
                                                                                   ? Flow::device_to_platform
                                                                                   : Flow::platform_to_device);
  }
  if (allowed && suffix_out) *suffix_out = suffix;
  return allowed;
}

}  // namespace iotgate
