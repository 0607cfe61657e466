// Lierda reports the platform answers with an ack: time sync (HeaderCtrl 29) and the data reports.
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
// Whether a report may be a frame the platform answers: a JSON object (after blanks), or anything on model/hex.
// Decided before anything else is built: most fleets' uplinks are opaque application data.
inline bool lierda_may_answer(std::string_view suffix, std::string_view payload) {
  if (suffix == "model/hex") return true;
  size_t start = 0;  // find_first_not_of would call memchr per byte; most payloads decide on the first one
  while (start < payload.size() &&
         (payload[start] == ' ' || payload[start] == '\t' || payload[start] == '\r' || payload[start] == '\n'))
    ++start;
  return start < payload.size() && payload[start] == '{';
}
std::optional<LierdaAck> lierda_ack_for(std::string_view suffix, std::string_view payload,
                                        const std::function<int64_t()>& now_ms, std::string_view timezone,
                                        const std::function<int64_t()>& fallback_message_id);

}  // namespace iotgate
