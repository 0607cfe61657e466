// The Lierda AUTH exchange (a DeviceSecret for the ProductKey holder, with the session key of an encrypted product)
// and the session keys of V2 sessions (HeaderCtrl 3).
#include "iotgate/crypto.h"
#include "iotgate/ids.h"
#include "iotgate/json.h"
#include "iotgate/lierda/lierda.h"
#include "iotgate/ota/router.h"

namespace iotgate {
namespace {

// Replies that carry a secret or a session key go at QoS 0: a QoS 1 message waiting in a durable session would be
// handed to whichever connection resumes that session with the same client id.
constexpr int kSecretQos = 0;

}  // namespace

Handling LierdaModule::handling(SessionKind kind, std::string_view suffix) const {
  // The ACL allowed the publish, so the kind narrows it down: an AUTH session may publish only its request.
  if (kind == SessionKind::lierda_auth) return Handling::handle;
  if (suffix == "firmware_report" || suffix == "ota_notify_ack") return Handling::handle;
  return gate_.config.lierda_acks ? Handling::acknowledge : Handling::deliver;
}

bool LierdaModule::handle(const DevicePublish& m) {
  const Identity& id = m.identity;
  if (id.kind == SessionKind::lierda_auth) return handle_auth_request(m.client_id, m.handle, id, m.payload);
  const Product* p = gate_.registry.product(id.product);
  const Device* device = m.device();
  if (!p || !device) return false;
  return ota_message(m.client_id, id, *p, *device, m.suffix, m.payload, m.session_started_ms, m.last_report);
}

bool LierdaModule::handle_auth_request(const std::string& client_id, const void* handle, const Identity& id,
                                       std::string_view payload) {
  rapidjson::Document doc;
  doc.Parse<kDeviceJson>(payload.data(), payload.size());
  auto drop = [&](const std::string& why) {
    gate_.log.limited(LogLevel::notice, "bad-auth-request",
                      "iotgate: auth request from '" + client_id + "' refused: " + why);
    return false;
  };
  if (doc.HasParseError() || !doc.IsObject()) return drop("not a JSON object");
  if (int_member(doc, "HeaderCtrl") != 1) return drop("HeaderCtrl is not 1");
  PendingReply p = PendingReply::to(Protocol::lierda, auth_reply, client_id, handle, id, "downlink", gate_.clock());
  p.message_id_json = echo_id(doc, "MessageId");
  auto refuse = [&](int code, const std::string& why) {
    gate_.log.limited(LogLevel::notice, "auth-request-refused",
                      "iotgate: auth request from '" + client_id + "' answered with Code " + std::to_string(code) +
                          ": " + why);
    reply_auth(p, code, nullptr);
    return true;
  };
  if (string_member(doc, "Version") != std::string_view("2.0")) return refuse(6, "Version is not \"2.0\"");
  auto body = doc.FindMember("Payload");
  if (body == doc.MemberEnd() || !body->value.IsObject()) return refuse(4, "Payload is not an object");
  auto openid = string_member(body->value, "OpenID");
  auto pid = string_member(body->value, "ProductID");
  auto eui = string_member(body->value, "NodeEui");
  if (!openid || !pid || !eui) return refuse(4, "Payload lacks OpenID, ProductID or NodeEui");
  if (!is_node_eui(*eui)) return refuse(4, "invalid NodeEui");
  if (*pid != id.product || *openid != id.openid || *eui != id.device)
    return refuse(4, "request names another device than the connection");
  const Product* product = gate_.registry.product(id.product);
  if (!product || product->protocol != Protocol::lierda || product->openid != id.openid)
    return refuse(2, "unknown product");
  auto type = int_member(body->value, "Type");
  if (type != product->auth_type) return refuse(5, "Type does not match the product's auth type");
  const Device* d = gate_.registry.device(id.product, id.device);
  if (d && !d->enabled) return refuse(4, "device is disabled");
  if (!d && product->auth_type != 0) return refuse(4, "device is not registered");
  if (!d && product->limit > 0 && static_cast<int64_t>(gate_.registry.auto_created(id.product)) >= product->limit)
    return refuse(4, "auto-creation limit of product " + id.product + " reached");
  // A one-device-one-secret (type 2) device already holds its secret.
  if (product->auth_type == 2) p.kind = auth_reply_without_secret;

  // A session key is issued only with a first DeviceSecret, to the connection that becomes the device's owner. A
  // device that has its secret gets or changes its key only as itself, over its V2 session (start_rekey): any
  // holder of the ProductKey can open an AUTH session for any NodeEui (docs/security.md).
  if (d && !d->secret.empty()) {
    gate_.replies.due(std::move(p));
    return true;
  }

  StoreJob job;
  job.type = StoreJob::Type::lierda_issue;
  job.product = id.product;
  job.device = id.device;
  job.create = product->auth_type == 0;
  job.origin = "auth";
  job.limit = product->limit;
  job.candidate_secret = random_hex(16);
  if (product->encrypted) job.fields = new_session_key(*product);
  job.token = gate_.replies.await(std::move(p));
  gate_.effects.submit(std::move(job));
  return true;
}

void LierdaModule::reply_auth(const PendingReply& p, int code, const Device* device) {
  const bool include_secret = p.kind == auth_reply;
  std::string body = "{\"Code\":" + std::to_string(code);
  // Type 2 devices hold their secret already, and only their V2 session gets their session key: the AUTH session
  // proves nothing but the ProductKey. For types 0 and 1 the ProductKey holder is given the DeviceSecret anyway.
  if (code == 0 && device && include_secret) {
    body += ",\"DeviceSecret\":" + json_quoted(device->secret);
    if (device->session && !device->session->id.empty())
      body += ",\"SessionID\":" + json_quoted(device->session->id) + ",\"Nonce\":" + std::to_string(device->session->nonce);
  }
  body += "}";
  std::string msg = "{\"MessageId\":" + p.message_id_json + ",\"HeaderCtrl\":1,\"Payload\":" + body +
                    ",\"Version\":\"2.0\"}";
  gate_.effects.publish_to_client(p.client_id, p.topic, msg, kSecretQos);
  if (code == 0)
    gate_.log.info("iotgate: auth request of '" + p.client_id + "' answered with Code 0" +
                   (include_secret ? " and its DeviceSecret" : ""));
}

void LierdaModule::answer(const PendingReply& p, bool ok, const std::string& error, const Device* d) {
  switch (p.kind) {
    case auth_reply:
    case auth_reply_without_secret: {
      int code = ok && d ? 0
                 : error == "unknown_product" ? 2
                 : (error == "unknown_device" || error == "disabled" || error == "limit") ? 4
                                                                                          : 1;
      reply_auth(p, code, d);
      break;
    }
    case session_key_notice:
      if (d && d->session && !d->session->id.empty()) {
        std::string msg = "{\"MessageId\":" + std::to_string(gate_.clock()) +
                          ",\"HeaderCtrl\":3,\"Payload\":{\"SessionID\":" + json_quoted(d->session->id) +
                          ",\"Nonce\":" + std::to_string(d->session->nonce) + "},\"Version\":\"2.0\"}";
        gate_.effects.publish_to_client(p.client_id, p.topic, msg, kSecretQos);
        gate_.log.info("iotgate: sent a session key (HeaderCtrl 3) to '" + p.client_id + "'");
      }
      break;
  }
}

Fields LierdaModule::new_session_key(const Product& product) const {
  std::string session_id = random_hex(4);
  uint32_t nonce = 0;
  for (uint8_t b : random_bytes(4)) nonce = nonce << 8 | b;
  nonce &= 0x7FFFFFFF;  // a Java int on the device side
  return {{"session_id", session_id},
          {"nonce", std::to_string(nonce)},
          {"session_key", *lierda_session_key(product.product_key, session_id, nonce)},
          {"session_key_expires", std::to_string(gate_.clock() + gate_.config.session_key_ttl)}};
}

PendingReply LierdaModule::key_notice(const std::string& client_id, const void* handle, const Identity& id) const {
  return PendingReply::to(Protocol::lierda, session_key_notice, client_id, handle, id, "downlink", gate_.clock());
}

void LierdaModule::start_rekey(const std::string& client_id, const void* handle, const Identity& id,
                               const Product& product) {
  StoreJob job;
  job.type = StoreJob::Type::lierda_issue;
  job.product = id.product;
  job.device = id.device;
  job.candidate_secret = random_hex(16);  // unused: the device has a secret
  job.fields = new_session_key(product);
  job.token = gate_.replies.await(key_notice(client_id, handle, id));
  gate_.effects.submit(std::move(job));
}

}  // namespace iotgate
