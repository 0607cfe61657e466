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

// Which way a topic under a session's prefix flows. `suffix` is the topic after the prefix.
enum class Flow { none, device_to_platform, platform_to_device };
Flow classify_lierda_suffix(std::string_view suffix);  // after "/sys/${OpenID}/${ProductID}/${NodeEui}/"
Flow classify_krt_suffix(std::string_view suffix);     // after "/sys/${ProductID}/${DeviceID}/thing/"
Flow classify_emu_suffix(std::string_view suffix);     // after "v1/wudun|user/${X}/${DEVICE}/"

std::string lierda_prefix(std::string_view openid, std::string_view product, std::string_view node_eui);
std::string krt_prefix(std::string_view product, std::string_view device);
std::string emu_prefix(std::string_view emu_namespace, std::string_view product, std::string_view device);
inline constexpr std::string_view kLierdaAuthTopic = "/sys/device/auth";
inline constexpr std::string_view kKrtRegisterPost = "register/post";
inline constexpr std::string_view kKrtRegisterSet = "register/set";

// The ACL of device sessions (every kind but `account`), from the session's kind and topic prefix. When it allows
// a topic under the prefix, `*suffix` (if given) is set to the rest of the topic.
bool device_session_allows(SessionKind kind, std::string_view prefix, Access access, TopicText topic,
                           std::string_view* suffix = nullptr);
inline bool device_session_allows(const Identity& id, Access access, TopicText topic) {
  return device_session_allows(id.kind, id.prefix, access, topic);
}
// A read rule of `account` of the shape "X/#" (no %u / %c): its stem X, whose subtree the account may read; the
// first such rule, if any. The index keeps it so that most read checks of an account are answered there.
std::optional<std::string_view> read_subtree_stem(const Account& account);
// True when `topic` lies in the subtree of `stem`: it is `stem`, or starts with `stem` + '/' (what "stem/#" matches).
bool in_subtree(std::string_view stem, TopicText topic);
// The ACL of a service account: superuser, or its rules with %u / %c substituted.
// `client_id` and `username` (may be null) are NUL-terminated, read only for a rule with %u / %c.
bool account_allows(const Account& account, const char* client_id, const char* username, Access access,
                    TopicText topic);

}  // namespace iotgate
