// Lierda "X platform" protocol v2.0 (../shared/notes/protocol.md): AUTH-${OpenID}-${ProductID} logins that obtain
// a DeviceSecret over /sys/device/auth, V2 logins with an AES-128 password, session keys, report acks and OTA
// (firmware_report / ota_notify). Everything Lierda means is in src/lierda/.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "iotgate/identity.h"
#include "iotgate/lierda/frames.h"
#include "iotgate/protocol.h"

namespace iotgate {

// Topics: every session lies under /sys/${OpenID}/${ProductID}/${NodeEui}/; the AUTH request goes to one fixed topic.
std::string lierda_prefix(std::string_view openid, std::string_view product, std::string_view node_eui);
inline constexpr std::string_view kLierdaAuthTopic = "/sys/device/auth";
// Which way a topic flows, from its suffix after the device's prefix.
Flow classify_lierda_suffix(std::string_view suffix);
// The ACL of lierda_auth and lierda_v2 sessions (see device_session_allows; `access` is never unsubscribe).
bool lierda_session_allows(SessionKind kind, std::string_view prefix, Access access, TopicText topic,
                           std::string_view* suffix);

// Lierda V2 connect password (protocol.md 1.2): upper-case hex of AES-128-ECB under the DeviceSecret
// of "${ProductID}.${NodeEui}_${ProductKey}" (type 0) or "..._${timestamp}" (type 1).
// Returns nullopt when device_secret_hex is not 32 hex digits.
std::optional<std::string> lierda_v2_password(std::string_view device_secret_hex, std::string_view product_id,
                                              std::string_view node_eui, std::string_view product_key,
                                              std::optional<int64_t> timestamp);
// Lierda SessionKey (PROTOCOL-NOTES decision 1): AES-128-ECB under ProductKey of the UTF-8 string
// SessionID followed by the nonce in lower-case hex; the first 16 bytes of the output, as 32 hex digits.
std::optional<std::string> lierda_session_key(std::string_view product_key_hex, std::string_view session_id,
                                              uint32_t nonce);

class LierdaModule final : public ProtocolModule {
 public:
  explicit LierdaModule(GateContext& gate) : gate_(gate) {}
  Protocol protocol() const override { return Protocol::lierda; }
  std::optional<Resolution> resolve(std::string_view client_id, std::string_view username,
                                    PasswordArg password) override;
  // A V2 session of an encrypted product is told its session key (a new one if it has none or it expired).
  void on_login(const std::string& client_id, const void* handle, const Identity& id, Device& device,
                Touch& touch) override;
  Handling handling(SessionKind kind, std::string_view suffix) const override;
  // Acks a report the way the platform does (encrypted under the session key for an encrypted product).
  void acknowledge(const DevicePublish& message) override;
  // The AUTH request, and the OTA uplinks firmware_report / ota_notify_ack.
  bool handle(const DevicePublish& message) override;
  void answer(const PendingReply& reply, bool ok, const std::string& error, const Device* device) override;
  std::optional<std::string> invalid_reason(const Identity& id, const Product& product) const override;
  std::optional<std::pair<std::string, std::string>> device_of_topic(
      const std::vector<std::string_view>& levels) const override;
  // HeaderCtrl 13 on the V2 session's ask_firmware topic.
  bool ask_firmware(const std::string& client_id, const Identity& id) override;

  // The OTA uplinks firmware_report (HeaderCtrl 8, answered with firmware_report_ack and, when a task matches,
  // ota_notify) and ota_notify_ack (HeaderCtrl 9). `device` holds the session key of an encrypted product.
  // False when the message is malformed.
  bool ota_message(const std::string& client_id, const Identity& id, const Product& product, const Device& device,
                   std::string_view suffix, std::string_view payload, int64_t session_started_ms,
                   std::string* last_stored = nullptr);

 private:
  enum ReplyKind : int {
    auth_reply,                // Code 0 with the DeviceSecret (and the session key issued with it)
    auth_reply_without_secret, // type 2: the device holds its secret already
    session_key_notice,        // HeaderCtrl 3 on the V2 session
  };
  Resolution resolve_auth(std::string_view client_id, std::string_view username, PasswordArg password);
  Resolution resolve_v2(std::string_view client_id, std::string_view username, PasswordArg password);
  bool handle_auth_request(const std::string& client_id, const void* handle, const Identity& id,
                           std::string_view payload);
  void reply_auth(const PendingReply& reply, int code, const Device* device);
  PendingReply key_notice(const std::string& client_id, const void* handle, const Identity& id) const;
  // A fresh SessionID and Nonce, the SessionKey derived from them, and its expiry, as device fields.
  Fields new_session_key(const Product& product) const;
  void start_rekey(const std::string& client_id, const void* handle, const Identity& id, const Product& product);

  GateContext& gate_;
  int64_t ota_message_seq_ = 0;  // MessageId of ota_notify
};

}  // namespace iotgate
