// EMU gateways: a gateway logs in with its device uid and a hashed secret, and exchanges OTA commands and results
// on v1/${wudun|user}/${PRODUCT_KEY}/${DEVICE}/ota/<name>/{command,result}. Everything EMU means is in
// src/emu/emu.cpp.
#pragma once
#include <optional>
#include <string>
#include <string_view>

#include "iotgate/identity.h"
#include "iotgate/protocol.h"

namespace iotgate {

// Topics: every gateway lies under v1/${namespace}/${PRODUCT_KEY or TENANT}/${DEVICE}/.
std::string emu_prefix(std::string_view emu_namespace, std::string_view product, std::string_view device);
// Which way a topic flows, from its suffix after the gateway's prefix: ota/<name>/result up, ota/<name>/command down.
Flow classify_emu_suffix(std::string_view suffix);
// The ACL of emu_gateway sessions (see device_session_allows; `access` is never unsubscribe).
bool emu_session_allows(std::string_view prefix, Access access, TopicText topic, std::string_view* suffix);

class EmuModule final : public ProtocolModule {
 public:
  explicit EmuModule(GateContext& gate) : gate_(gate) {}
  Protocol protocol() const override { return Protocol::emu; }
  // Username = the gateway's device uid, client id bound to it (NAME or NAME:...), password = its secret.
  std::optional<Resolution> resolve(std::string_view client_id, std::string_view username,
                                    PasswordArg password) override;
  Handling handling(SessionKind kind, std::string_view suffix) const override;
  // ota/<name>/result: stored per sub-device.
  bool handle(const DevicePublish& message) override;
  std::optional<std::pair<std::string, std::string>> device_of_topic(
      const std::vector<std::string_view>& levels) const override;

  // The result of command `name` (emu_version, emu_upgrade, emu_upgrade_result); false when malformed.
  bool ota_result(const std::string& client_id, const Identity& id, std::string_view name, std::string_view payload);

 private:
  GateContext& gate_;
};

}  // namespace iotgate
