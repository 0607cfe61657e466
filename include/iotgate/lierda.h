// Lierda frames the platform answers with an ack: time sync (HeaderCtrl 29) and the data reports.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace iotgate {

struct LierdaAck {
  std::string topic_suffix;  // under the device's prefix, e.g. "uplink_ack"
  std::string message_id;    // JSON text of the MessageId to echo
  int header = 0;            // HeaderCtrl of the ack
  std::string payload;       // JSON object text of the ack's Payload (before any encryption)
  bool encryptable = true;   // false for time sync, which is never encrypted
  std::string problem;       // non-empty: the frame was malformed (the ack then carries Code "4001")
};

// The ack a device expects for a frame it published on `suffix` (the topic after its prefix), or nullopt when
// the topic is not a report the platform acknowledges or the frame cannot be answered at all (not JSON).
// `now_ms` and `timezone` fill the time sync answer; `fallback_message_id` stands in for a missing MessageId.
// The clocks are read only when needed: most frames on this per-message path need neither.
std::optional<LierdaAck> lierda_ack_for(std::string_view suffix, std::string_view payload,
                                        const std::function<int64_t()>& now_ms, std::string_view timezone,
                                        const std::function<int64_t()>& fallback_message_id);

}  // namespace iotgate
