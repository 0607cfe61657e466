// Lierda's OTA wire format: firmware_report (HeaderCtrl 8) and its ack, ota_notify (HeaderCtrl 9) and its ack,
// ask_firmware (HeaderCtrl 13). Payloads of encrypted products are AES-128-ECB under the session key, as hex.
#include "iotgate/crypto.h"
#include "iotgate/json.h"
#include "iotgate/lierda/lierda.h"
#include "iotgate/ota/router.h"

namespace iotgate {

bool LierdaModule::ota_message(const std::string& client_id, const Identity& id, const Product& product,
                               const Device& device, std::string_view suffix, std::string_view payload,
                               int64_t session_started_ms, std::string* last_stored) {
  rapidjson::Document doc;
  doc.Parse<kDeviceJson>(payload.data(), payload.size());
  auto refuse = [&](const std::string& why) {
    gate_.log.limited(LogLevel::notice, "bad-ota-message",
                 "iotgate: " + std::string(suffix) + " from '" + client_id + "' refused: " + why);
    return false;
  };
  if (doc.HasParseError() || !doc.IsObject()) return refuse("not a JSON object");
  auto header = int_member(doc, "HeaderCtrl");
  std::string message_id = echo_id(doc, "MessageId");
  // Encrypted products carry the Payload as hex of AES-128-ECB under the session key.
  bool encrypted = product.encrypted && !device.session_key().empty();
  rapidjson::Document body;
  auto payload_it = doc.FindMember("Payload");
  if (payload_it == doc.MemberEnd()) return refuse("no Payload");
  const rapidjson::Value* p = &payload_it->value;
  if (p->IsString() && encrypted) {
    auto cipher = from_hex(std::string_view(p->GetString(), p->GetStringLength()));
    auto key = from_hex(device.session_key());
    std::optional<std::string> plain;
    if (cipher && key) plain = aes128_ecb_decrypt(*key, *cipher);
    if (!plain) return refuse("Payload does not decrypt under the session key");
    body.Parse<kDeviceJson>(plain->data(), plain->size());
    if (body.HasParseError()) return refuse("decrypted Payload is not JSON");
    p = &body;
  }
  if (!p->IsObject()) return refuse("Payload is not an object");
  std::string prefix = id.prefix;
  auto wrap = [&](const std::string& payload_json) {
    if (!encrypted) return payload_json;
    return json_quoted(to_hex_upper(aes128_ecb_encrypt(*from_hex(device.session_key()), payload_json)));
  };

  if (suffix == "firmware_report") {
    if (header != 8) return refuse("HeaderCtrl is not 8");
    auto version = text_or_number(*p, "SoftVer");
    auto hardware = text_or_number(*p, "HardVer");
    auto module = text_or_number(*p, "Module");
    std::string ack_code = "200", ack_msg = "SUCCESS";
    bool ok = version && safe_text(*version, 64) && (!hardware || hardware->empty() || safe_text(*hardware, 64)) &&
              (!module || safe_text(*module, 64));
    if (!ok) {
      ack_code = "4001";
      ack_msg = "FAILURE";
    }
    gate_.effects.publish_to_client(client_id, prefix + "firmware_report_ack",
                               "{\"MessageId\":" + message_id + ",\"HeaderCtrl\":8,\"Payload\":" +
                                   wrap("{\"Code\":\"" + ack_code + "\",\"Msg\":\"" + ack_msg + "\"}") +
                                   ",\"Version\":\"2.0\"}",
                               1);
    if (!ok) return refuse("SoftVer / HardVer / Module missing or malformed");
    FirmwareReport report{module ? *module : "default", *version, hardware.value_or("")};
    gate_.ota.on_report(id, report, session_started_ms, last_stored, [&](const OtaTask& t, const std::string& down_id) {
      std::string body_json = "{\"Type\":2,\"Url\":" + json_quoted(t.target_url) + ",\"SoftVer\":" +
                              json_quoted(t.target_version) + ",\"SoftSize\":" + std::to_string(t.target_size) +
                              ",\"MD5\":" + json_quoted(t.target_md5) + ",\"DownID\":" + json_quoted(down_id) +
                              ",\"firmwareName\":" + json_quoted(t.name);
      if (t.identify != "default") body_json += ",\"Module\":" + json_quoted(t.identify);
      body_json += "}";
      gate_.effects.publish_to_client(client_id, prefix + "ota_notify",
                                 "{\"MessageId\":" + std::to_string(++ota_message_seq_) + ",\"HeaderCtrl\":9,\"Payload\":" +
                                     wrap(body_json) + ",\"Version\":\"2.0\"}",
                                 1);
    });
    return true;
  }
  // ota_notify_ack
  if (header != 9) return refuse("HeaderCtrl is not 9");
  auto down_id = text_or_number(*p, "DownID");
  if (!down_id || !safe_text(*down_id, 64)) return refuse("DownID missing or malformed");
  gate_.ota.on_ack(id, *down_id);
  return true;
}

bool LierdaModule::ask_firmware(const std::string& client_id, const Identity& id) {
  if (id.kind != SessionKind::lierda_v2) return false;
  gate_.effects.publish_to_client(client_id, id.prefix + "ask_firmware",
                                  "{\"MessageId\":" + std::to_string(gate_.clock()) +
                                      ",\"HeaderCtrl\":13,\"Payload\":{},\"Version\":\"2.0\"}",
                                  1);
  gate_.log.info("iotgate: asked " + id.product + "/" + id.device + " for its firmware version (HeaderCtrl 13)");
  return true;
}

}  // namespace iotgate
