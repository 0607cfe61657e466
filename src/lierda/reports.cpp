// Lierda reports the platform acknowledges: which ack each one gets, and sending it.
#include "iotgate/crypto.h"
#include "iotgate/json.h"
#include "iotgate/lierda/lierda.h"
#include "iotgate/ota/router.h"

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

namespace iotgate {
namespace {


// Report topic -> (ack topic, HeaderCtrl values it may carry).
struct Route {
  std::string ack;
  int headers[2];
};
std::optional<Route> route(std::string_view suffix) {
  if (suffix == "uplink") return Route{"uplink_ack", {4, 4}};
  if (suffix == "update_time") return Route{"update_time_ack", {29, 29}};
  if (suffix == "model/property/report") return Route{"model/property/report_ack", {16, 16}};
  if (suffix == "model/history/data/report") return Route{"model/history/data/report_ack", {27, 27}};
  if (suffix == "model/hex/report") return Route{"model/hex/report_ack", {18, 19}};
  if (suffix == "model/hex") return Route{"model/hex_ack", {28, 28}};
  if (suffix.substr(0, 12) == "model/event/" && ends_with(suffix, "/report") && suffix.size() > 19)
    return Route{std::string(suffix) + "_ack", {17, 17}};
  return std::nullopt;
}

}  // namespace

std::optional<LierdaAck> lierda_ack_for(std::string_view suffix, std::string_view payload,
                                        const std::function<int64_t()>& now_ms, std::string_view timezone,
                                        const std::function<int64_t()>& fallback_message_id) {
  if (!lierda_may_answer(suffix, payload)) return std::nullopt;  // opaque application data: no ack, no parse
  auto r = route(suffix);
  if (!r) return std::nullopt;
  LierdaAck ack;
  ack.topic_suffix = r->ack;
  ack.header = r->headers[0];
  if (suffix == "model/hex") {
    // A full-hex report is a bare hex string, no frame (never encrypted).
    rapidjson::Document d;
    d.Parse<kDeviceJson>(payload.data(), payload.size());
    std::string_view hex = !d.HasParseError() && d.IsString() ? std::string_view(d.GetString(), d.GetStringLength())
                                                              : payload;
    bool ok = !hex.empty() && hex.size() % 2 == 0 && hex.find_first_not_of("0123456789abcdefABCDEF") == std::string_view::npos;
    if (!ok) ack.problem = "not a hex string";
  } else {
    rapidjson::Document d;
    d.Parse<kDeviceJson>(payload.data(), payload.size());
    if (d.HasParseError() || !d.IsObject()) return std::nullopt;
    auto mid = d.FindMember("MessageId");
    if (mid != d.MemberEnd() && (mid->value.IsNumber() || mid->value.IsString())) ack.message_id = json_text(mid->value);
    auto header = d.FindMember("HeaderCtrl");
    int h = header != d.MemberEnd() && header->value.IsInt() ? header->value.GetInt() : -1;
    if (h != r->headers[0] && h != r->headers[1]) ack.problem = "HeaderCtrl " + std::to_string(h) + " does not belong on this topic";
    else ack.header = h;
    auto version = d.FindMember("Version");
    if (ack.problem.empty() && (version == d.MemberEnd() || !version->value.IsString() ||
                                std::string_view(version->value.GetString()) != "2.0"))
      ack.problem = "Version is not \"2.0\"";
  }
  if (ack.message_id.empty()) ack.message_id = std::to_string(fallback_message_id());
  std::string code = ack.problem.empty() ? "\"Code\":\"200\",\"Msg\":\"SUCCESS\"" : "\"Code\":\"4001\",\"Msg\":\"FAILURE\"";
  if (suffix == "update_time" && ack.problem.empty()) {
    rapidjson::Value tz(timezone.data(), static_cast<rapidjson::SizeType>(timezone.size()));
    ack.payload = "{" + code + ",\"Data\":{\"timestamp\":" + std::to_string(now_ms()) + ",\"timezone\":" + json_text(tz) + "}}";
    ack.encryptable = false;
  } else {
    ack.payload = "{" + code + "}";
    ack.encryptable = suffix != "model/hex";
  }
  return ack;
}

// The ack of a report; the report itself still goes on to its subscribers. Oversized or opaque reports (not a
// frame: application data) were passed on by the gate before anything was built.
void LierdaModule::acknowledge(const DevicePublish& m) {
  if (m.payload.size() > gate_.config.max_payload || !lierda_may_answer(m.suffix, m.payload)) return;
  auto ack = lierda_ack_for(m.suffix, m.payload, wall_ms, gate_.config.timezone, gate_.clock);
  if (!ack) return;
  std::string_view client_id(m.client_id);
  const Identity& id = m.identity;
  if (!ack->problem.empty())
    gate_.log.limited(LogLevel::notice, "bad-report",
                      "iotgate: " + std::string(m.suffix) + " from '" + std::string(client_id) +
                          "' answered with Code 4001: " + ack->problem);
  std::string body = ack->payload;
  if (ack->encryptable) {
    const Product* p = gate_.registry.product(id.product);
    // The session's device key encrypts the ack of an encrypted product.
    const Device* device = p && p->encrypted ? m.device() : nullptr;
    if (device && !device->session_key().empty())
      body = json_quoted(to_hex_upper(aes128_ecb_encrypt(*from_hex(device->session_key()), body)));
  }
  gate_.effects.publish_to_client(std::string(client_id), id.prefix + ack->topic_suffix,
                                  "{\"MessageId\":" + ack->message_id + ",\"HeaderCtrl\":" +
                                      std::to_string(ack->header) + ",\"Payload\":" + body + ",\"Version\":\"2.0\"}",
                                  1);
}

}  // namespace iotgate
