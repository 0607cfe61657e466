// KRT cloud: dynamic registration with the ProductSecret (register/post -> register/set with a DeviceSecret), then
// logins with the DeviceSecret, and OTA on /sys/${ProductID}/${DeviceID}/thing/ota/. Everything KRT means is in
// src/krt/krt.cpp.
#pragma once
#include <optional>
#include <string>
#include <string_view>

#include "iotgate/identity.h"
#include "iotgate/protocol.h"

namespace iotgate {

// Topics: every session lies under /sys/${ProductID}/${DeviceID}/thing/.
std::string krt_prefix(std::string_view product, std::string_view device);
inline constexpr std::string_view kKrtRegisterPost = "register/post";
inline constexpr std::string_view kKrtRegisterSet = "register/set";
// Which way a topic flows, from its suffix after the device's prefix: .../post up, .../set down.
Flow classify_krt_suffix(std::string_view suffix);
// The ACL of krt_register and krt_device sessions (see device_session_allows; `access` is never unsubscribe).
bool krt_session_allows(SessionKind kind, std::string_view prefix, Access access, TopicText topic,
                        std::string_view* suffix);

class KrtModule final : public ProtocolModule {
 public:
  explicit KrtModule(GateContext& gate) : gate_(gate) {}
  Protocol protocol() const override { return Protocol::krt; }
  // Client id = ProductID (as the seed says) or ${ProductID}.${DeviceID}; username = DeviceID; password = the
  // DeviceSecret (a device session) or the ProductSecret (a registration session).
  std::optional<Resolution> resolve(std::string_view client_id, std::string_view username,
                                    PasswordArg password) override;
  // A device's first login with its DeviceSecret activates it.
  void on_login(const std::string& client_id, const void* handle, const Identity& id, Device& device,
                Touch& touch) override;
  Handling handling(SessionKind kind, std::string_view suffix) const override;
  // register/post (request CMD 20, confirmation CMD 21) and thing/ota/post.
  bool handle(const DevicePublish& message) override;
  // The register/set reply with the DeviceSecret.
  void answer(const PendingReply& reply, bool ok, const std::string& error, const Device* device) override;
  std::optional<std::string> invalid_reason(const Identity& id, const Product& product) const override;
  std::optional<std::pair<std::string, std::string>> device_of_topic(
      const std::vector<std::string_view>& levels) const override;

  // thing/ota/post: CMD 10 version report (answered with CMD 11 on ota/set when a task matches), CMD 11 ack.
  // False when the message is malformed.
  bool ota_message(const std::string& client_id, const Identity& id, std::string_view payload,
                   int64_t session_started_ms, std::string* last_stored = nullptr);

 private:
  bool handle_register(const std::string& client_id, const void* handle, const Identity& id,
                       std::string_view payload);
  GateContext& gate_;
};

}  // namespace iotgate
