// Who a session is, and what it may do: every ACL decision is answered from this, in memory.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "iotgate/model.h"
#include "iotgate/topic.h"

namespace iotgate {

enum class SessionKind : uint8_t {
  lierda_auth,   // AUTH-${OpenID}-${ProductID}: asks for its DeviceSecret
  lierda_v2,     // V2_${ProductID}.${NodeEui}_${type}_${timestamp}
  krt_register,  // KRT registration with the ProductSecret
  krt_device,    // KRT device with its DeviceSecret
  emu_gateway,   // EMU gateway account
  account,       // service account
};
const char* to_string(SessionKind kind);
// The protocol module a session kind belongs to (nullopt: a service account).
std::optional<Protocol> protocol_of(SessionKind kind);
// Sessions that are a registered device (their login and logout times are kept).
inline bool has_device(SessionKind k) {
  return k == SessionKind::lierda_v2 || k == SessionKind::krt_device || k == SessionKind::emu_gateway;
}

struct Identity {
  SessionKind kind = SessionKind::account;
  std::string product;
  std::string device;
  std::string prefix;  // topic prefix owned by the session ("" for accounts)
  std::string openid;   // lierda
  std::string account;  // account sessions: the account name
  int64_t type1_timestamp = 0;  // lierda_v2 type 1: the timestamp its password was made for
};

enum class Access { read, write, subscribe, unsubscribe };

// Which way a topic under a session's prefix flows (each protocol classifies its own suffixes).
enum class Flow { none, device_to_platform, platform_to_device };

// The ACL of device sessions (every kind but `account`), from the session's kind and topic prefix: dispatched to
// the session's protocol module. When it allows a topic under the prefix, `*suffix` (if given) is set to the rest
// of the topic.
bool device_session_allows(SessionKind kind, std::string_view prefix, Access access, TopicText topic,
                           std::string_view* suffix = nullptr);
inline bool device_session_allows(const Identity& id, Access access, TopicText topic) {
  return device_session_allows(id.kind, id.prefix, access, topic);
}

}  // namespace iotgate
