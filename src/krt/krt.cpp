// KRT cloud, all of it: identifiers and topics, logins, the ACL of its sessions, dynamic registration and the OTA
// wire format.
#include "iotgate/krt/krt.h"

#include "iotgate/crypto.h"
#include "iotgate/ids.h"
#include "iotgate/json.h"
#include "iotgate/ota/router.h"

namespace iotgate {

// Replies that carry a secret go at QoS 0: a QoS 1 message waiting in a durable session would be handed to
// whichever connection resumes that session with the same client id.
static constexpr int kSecretQos = 0;

std::string krt_prefix(std::string_view product, std::string_view device) {
  std::string p = "/sys/";
  p.append(product).append("/").append(device).append("/thing/");
  return p;
}

Flow classify_krt_suffix(std::string_view s) {
  if (!all_topic_levels(s) || s.find('/') == std::string_view::npos) return Flow::none;
  if (ends_with(s, "/post")) return Flow::device_to_platform;
  if (ends_with(s, "/set")) return Flow::platform_to_device;
  return Flow::none;
}

bool krt_session_allows(SessionKind kind, std::string_view prefix, Access access, TopicText topic,
                        std::string_view* suffix_out) {
  std::optional<TopicText> rest = topic.after(prefix);
  if (!rest) return false;
  const std::string_view suffix = rest->view();
  bool allowed = false;
  if (kind == SessionKind::krt_register) {
    allowed = suffix == (access == Access::write ? kKrtRegisterPost : kKrtRegisterSet);
  } else if (kind == SessionKind::krt_device && !suffix.empty()) {
    if (access == Access::subscribe)
      allowed = true;
    else if (suffix != kKrtRegisterPost && suffix != kKrtRegisterSet)
      allowed = classify_krt_suffix(suffix) ==
                (access == Access::write ? Flow::device_to_platform : Flow::platform_to_device);
  }
  if (allowed && suffix_out) *suffix_out = suffix;
  return allowed;
}

// --- logins ------------------------------------------------------------------------------------------------

std::optional<Resolution> KrtModule::resolve(std::string_view cid, std::string_view user, PasswordArg password) {
  std::string pid(cid);
  const Product* p = gate_.registry.product(pid);
  if (!p || p->protocol != Protocol::krt) {
    size_t dot = cid.find('.');
    if (dot == std::string_view::npos) return std::nullopt;
    pid = std::string(cid.substr(0, dot));
    p = gate_.registry.product(pid);
    if (!p || p->protocol != Protocol::krt) return std::nullopt;
    if (cid.substr(dot + 1) != user)
      return Resolution{std::nullopt, {"client-id-mismatch", "client id names another device than the username"}};
  }
  std::string did(user);
  if (!is_plain_id(did)) return Resolution{std::nullopt, {"invalid-device-id", "invalid DeviceID"}};
  if (!p->enabled) return Resolution{std::nullopt, {"product-disabled", "product " + pid + " is disabled"}};
  const Device* d = gate_.registry.device(pid, did);
  if (d && !d->enabled) return Resolution{std::nullopt, {"device-disabled", "device " + did + " is disabled"}};
  Identity id;
  id.product = pid;
  id.device = did;
  id.prefix = krt_prefix(pid, did);
  bool device_login;
  if (password) {
    std::string_view pw = *password ? **password : std::string_view();
    bool device_secret_ok = d && !d->secret.empty() && *password && constant_time_equal(pw, d->secret);
    bool product_secret_ok = *password && constant_time_equal(pw, p->product_secret);
    if (!device_secret_ok && !product_secret_ok) return Resolution{std::nullopt, {"wrong-secret", "wrong secret"}};
    device_login = device_secret_ok;
  } else {
    device_login = d && d->activated;
  }
  if (device_login) {
    id.kind = SessionKind::krt_device;
    return Resolution{id, {}};
  }
  if (!p->dynamic_register)
    return Resolution{std::nullopt, {"registration-off", "dynamic registration is off for product " + pid}};
  if (d && d->activated)
    return Resolution{std::nullopt, {"already-activated", "device " + did + " is already activated"}};
  if (!d) {
    if (!p->auto_create) return Resolution{std::nullopt, {"unknown-device", "unknown device " + did}};
    if (p->limit > 0 && static_cast<int64_t>(gate_.registry.auto_created(pid)) >= p->limit)
      return Resolution{std::nullopt, {"auto-create-limit", "auto-creation limit of product " + pid + " reached"}};
  }
  id.kind = SessionKind::krt_register;
  return Resolution{id, {}};
}

void KrtModule::on_login(const std::string& client_id, const void* handle, const Identity& id, Device& device,
                         Touch& touch) {
  (void)client_id, (void)handle;
  if (id.kind != SessionKind::krt_device || device.activated) return;
  device.activated = true;
  touch.activated = true;
}

std::optional<std::string> KrtModule::invalid_reason(const Identity& id, const Product& product) const {
  if (id.kind == SessionKind::krt_register && !product.dynamic_register) return "dynamic registration turned off";
  return std::nullopt;
}

std::optional<std::pair<std::string, std::string>> KrtModule::device_of_topic(
    const std::vector<std::string_view>& levels) const {
  // /sys/{ProductID}/{DeviceID}/thing/
  if (levels.size() != 5 || !levels[0].empty() || levels[1] != "sys" || levels[4] != "thing") return std::nullopt;
  const Product* p = gate_.registry.product(std::string(levels[2]));
  if (!p || p->protocol != Protocol::krt || !gate_.registry.device(p->id, std::string(levels[3])))
    return std::nullopt;
  return std::pair{p->id, std::string(levels[3])};
}

// --- messages ----------------------------------------------------------------------------------------------

Handling KrtModule::handling(SessionKind kind, std::string_view suffix) const {
  // The ACL allowed the publish: a registration session may publish only register/post.
  if (kind == SessionKind::krt_register || suffix == "ota/post") return Handling::handle;
  return Handling::deliver;
}

bool KrtModule::handle(const DevicePublish& m) {
  if (m.identity.kind == SessionKind::krt_register)
    return handle_register(m.client_id, m.handle, m.identity, m.payload);
  return ota_message(m.client_id, m.identity, m.payload, m.session_started_ms, m.last_report);
}

bool KrtModule::handle_register(const std::string& client_id, const void* handle, const Identity& id,
                                std::string_view payload) {
  rapidjson::Document doc;
  doc.Parse<kDeviceJson>(payload.data(), payload.size());
  if (doc.HasParseError() || !doc.IsObject()) {
    gate_.log.limited(LogLevel::notice, "bad-register-request",
                 "iotgate: register message from '" + client_id + "' refused: not a JSON object");
    return false;
  }
  const Product* product = gate_.registry.product(id.product);
  Device* d = gate_.registry.device_mut(id.product, id.device);
  if (!product) return false;
  if (d && d->activated) {
    gate_.log.limited(LogLevel::notice, "register-after-activation",
                 "iotgate: register message from '" + client_id + "' not answered: device already activated");
    return true;
  }
  auto cmd = int_member(doc, "CMD");
  bool confirm = cmd == 21 || string_member(doc, "BACK") == std::string_view("OK");
  if (confirm) {
    if (!d || d->secret.empty()) {
      gate_.log.limited(LogLevel::notice, "bad-register-request",
                   "iotgate: registration confirmation from '" + client_id + "' refused: no secret was issued");
      return false;
    }
    d->activated = true;
    gate_.touch(Touch{.product = id.product, .device = id.device, .activated = true});
    gate_.log.info("iotgate: KRT device " + id.product + "/" + id.device + " activated; closing its registration session");
    gate_.effects.kick(client_id);
    return true;
  }
  if (cmd && *cmd != 20) {
    gate_.log.limited(LogLevel::notice, "bad-register-request",
                 "iotgate: register message from '" + client_id + "' refused: CMD " + std::to_string(*cmd));
    return false;
  }
  PendingReply p = PendingReply::to(Protocol::krt, 0, client_id, handle, id, kKrtRegisterSet, gate_.clock());
  p.message_id_json = echo_id(doc, "ID");
  if (d && !d->secret.empty()) {  // a repeated request gets the same secret
    gate_.replies.due(std::move(p));
    return true;
  }
  StoreJob job;
  job.type = StoreJob::Type::krt_issue;
  job.product = id.product;
  job.device = id.device;
  job.create = !d && product->auto_create;
  job.origin = "auto";
  job.candidate_secret = random_hex(16);
  job.limit = product->limit;
  job.token = gate_.replies.await(std::move(p));
  gate_.effects.submit(std::move(job));
  return true;
}

void KrtModule::answer(const PendingReply& p, bool ok, const std::string& error, const Device* device) {
  int code = ok && device ? 0
             : (error == "limit" || error == "unknown_device" || error == "unknown_product") ? 2
             : error == "disabled" ? 3
                                   : 1;
  // Both spellings of the reply fields, so devices written to either reading of the seed find their secret.
  std::string msg = "{\"CMD\":20,\"ID\":" + p.message_id_json + ",\"CODE\":" + std::to_string(code);
  if (code == 0 && device) {
    std::string s = json_quoted(device->secret);
    msg += ",\"DEVICE_SECRET\":" + s + ",\"ProductID\":" + json_quoted(device->product) +
           ",\"DeviceID\":" + json_quoted(device->id) + ",\"DeviceSecret\":" + s;
  }
  msg += "}";
  gate_.effects.publish_to_client(p.client_id, p.topic, msg, kSecretQos);
  gate_.log.info("iotgate: register request of '" + p.client_id + "' answered with CODE " + std::to_string(code));
}

bool KrtModule::ota_message(const std::string& client_id, const Identity& id, std::string_view payload,
                            int64_t session_started_ms, std::string* last_stored) {
  rapidjson::Document doc;
  doc.Parse<kDeviceJson>(payload.data(), payload.size());
  auto refuse = [&](const std::string& why) {
    gate_.log.limited(LogLevel::notice, "bad-ota-message", "iotgate: ota/post from '" + client_id + "' refused: " + why);
    return false;
  };
  if (doc.HasParseError() || !doc.IsObject()) return refuse("not a JSON object");
  auto cmd = int_member(doc, "CMD");
  if (cmd == 10) {
    auto fw = text_or_number(doc, "FW_VERSION");
    auto hw = text_or_number(doc, "HW_VERSION");
    if (!fw || !safe_text(*fw, 64) || (hw && !hw->empty() && !safe_text(*hw, 64)))
      return refuse("FW_VERSION / HW_VERSION missing or malformed");
    FirmwareReport report{"default", *fw, hw.value_or("")};
    std::string set_topic = id.prefix + "ota/set";
    gate_.ota.on_report(id, report, session_started_ms, last_stored, [&](const OtaTask& t, const std::string& down_id) {
      gate_.effects.publish_to_client(client_id, set_topic,
                                 "{\"CMD\":11,\"ID\":" + json_quoted(down_id) + ",\"URL\":" + json_quoted(t.target_url) +
                                     ",\"FW_VERSION\":" + json_quoted(t.target_version) + ",\"MD5\":" +
                                     json_quoted(t.target_md5) + ",\"SIZE\":" + std::to_string(t.target_size) + "}",
                                 1);
    });
    return true;
  }
  if (cmd == 11) {
    auto ack_id = text_or_number(doc, "ID");
    auto back = text_or_number(doc, "BACK");
    if (!ack_id || !safe_text(*ack_id, 64)) return refuse("ID missing or malformed");
    if (back != std::string("OK")) return refuse("BACK is not OK");
    gate_.ota.on_ack(id, *ack_id);
    return true;
  }
  return refuse("CMD is not 10 or 11");
}

}  // namespace iotgate
