// EMU gateways, all of it: topics, logins, the ACL of gateway sessions and the OTA results.
#include "iotgate/emu/emu.h"

#include "iotgate/json.h"

namespace iotgate {

std::string emu_prefix(std::string_view emu_namespace, std::string_view product, std::string_view device) {
  std::string p = "v1/";
  p.append(emu_namespace).append("/").append(product).append("/").append(device).append("/");
  return p;
}

Flow classify_emu_suffix(std::string_view s) {
  if (one_level_between(s, "ota/", "/result")) return Flow::device_to_platform;
  if (one_level_between(s, "ota/", "/command")) return Flow::platform_to_device;
  return Flow::none;
}

bool emu_session_allows(std::string_view prefix, Access access, TopicText topic, std::string_view* suffix_out) {
  // A gateway subscribes to the commands of every name at once.
  if (access == Access::subscribe) return filter_within(std::string(prefix) + "ota/+/command", topic.view());
  std::optional<TopicText> rest = topic.after(prefix);
  if (!rest) return false;
  const std::string_view suffix = rest->view();
  bool allowed = classify_emu_suffix(suffix) ==
                 (access == Access::write ? Flow::device_to_platform : Flow::platform_to_device);
  if (allowed && suffix_out) *suffix_out = suffix;
  return allowed;
}

std::optional<Resolution> EmuModule::resolve(std::string_view cid, std::string_view username, PasswordArg password) {
  std::string name(username);
  if (const Device* d = gate_.registry.emu_device_by_uid(name)) {
    const Product* p = gate_.registry.product(d->product);
    if (!p || p->protocol != Protocol::emu) return Resolution{std::nullopt, {"unknown-login", "unknown user"}};
    if (!p->enabled) return Resolution{std::nullopt, {"product-disabled", "product " + p->id + " is disabled"}};
    if (!d->enabled) return Resolution{std::nullopt, {"device-disabled", "device is disabled"}};
    if (!client_id_bound_to(cid, name))
      return Resolution{std::nullopt, {"client-id-unbound", "client id is not '" + name + "' or '" + name + ":...'"}};
    if (password) {
      if (!*password || !d->secret_hash) return Resolution{std::nullopt, {"wrong-secret", "wrong secret"}};
      if (!gate_.passwords.verify("emu:" + name, *d->secret_hash, **password))
        return Resolution{std::nullopt, {"wrong-secret", "wrong secret"}};
    }
    Identity id;
    id.kind = SessionKind::emu_gateway;
    id.product = p->id;
    id.device = d->id;
    id.prefix = emu_prefix(p->emu_namespace, p->id, d->id);
    return Resolution{id, {}};
  }
  return std::nullopt;
}

Handling EmuModule::handling(SessionKind kind, std::string_view suffix) const {
  (void)kind, (void)suffix;
  return Handling::handle;  // the ACL allowed the publish: a gateway may publish only OTA results
}

bool EmuModule::handle(const DevicePublish& m) {
  std::string_view name = m.suffix.substr(4, m.suffix.size() - 4 - 7);  // ota/<name>/result
  return ota_result(m.client_id, m.identity, name, m.payload);
}

std::optional<std::pair<std::string, std::string>> EmuModule::device_of_topic(
    const std::vector<std::string_view>& levels) const {
  // v1/{namespace}/{key}/{device}/
  if (levels.size() < 4 || levels[0] != "v1") return std::nullopt;
  const Product* p = gate_.registry.product(std::string(levels[2]));
  if (!p || p->protocol != Protocol::emu || p->emu_namespace != levels[1] ||
      !gate_.registry.device(p->id, std::string(levels[3])))
    return std::nullopt;
  return std::pair{p->id, std::string(levels[3])};
}

bool EmuModule::ota_result(const std::string& client_id, const Identity& id, std::string_view name,
                           std::string_view payload) {
  rapidjson::Document doc;
  doc.Parse<kDeviceJson>(payload.data(), payload.size());
  auto refuse = [&](const std::string& why) {
    gate_.log.limited(LogLevel::notice, "bad-ota-message",
                 "iotgate: EMU " + std::string(name) + " result from '" + client_id + "' refused: " + why);
    return false;
  };
  if (name != "emu_version" && name != "emu_upgrade" && name != "emu_upgrade_result")
    return refuse("unknown command");
  if (doc.HasParseError() || !doc.IsObject()) return refuse("not a JSON object");
  auto data = doc.FindMember("data");
  if (data == doc.MemberEnd()) return refuse("no data");
  // Each result entry: integer-like fields (or null for offline sub-devices) in their ranges.
  struct Range {
    const char* field;
    int64_t lo, hi;
  };
  static const Range ranges[] = {{"status", 1, 3},           {"emu_upgrade_success", 0, 1},
                                 {"emu_upgrade_device", 0, 99}, {"emu_upgrade_status", 1, 5},
                                 {"emu_upgrade_content", 0, 100}, {"download_status", 1, 3}};
  Fields entries;
  auto take = [&](const rapidjson::Value& e) -> bool {
    if (!e.IsObject()) return false;
    auto dev = int_member(e, "device_id");
    if (!dev) {
      auto sub = int_member(doc, "sub_device_id");
      if (!sub) return false;
      dev = sub;
    }
    std::string out = "{\"type\":" + json_quoted(name) + ",\"device_id\":" + std::to_string(*dev);
    for (const Range& r : ranges) {
      auto it = e.FindMember(r.field);
      if (it == e.MemberEnd()) continue;
      if (it->value.IsNull()) {
        out += ",\"" + std::string(r.field) + "\":null";
        continue;
      }
      auto v = int_like(it->value);
      if (!v || *v < r.lo || *v > r.hi) return false;
      out += ",\"" + std::string(r.field) + "\":" + std::to_string(*v);
    }
    auto sn = e.FindMember("emu_product_sn");
    if (sn != e.MemberEnd()) {
      if (sn->value.IsString() && sn->value.GetStringLength() <= 128)
        out += ",\"emu_product_sn\":" + json_quoted(std::string_view(sn->value.GetString(), sn->value.GetStringLength()));
      else if (!sn->value.IsNull())
        return false;
    }
    if (auto mid = text_or_number(doc, "mid"); mid && mid->size() <= 64) out += ",\"mid\":" + json_quoted(*mid);
    out += ",\"received_at\":" + std::to_string(gate_.clock()) + "}";
    entries[std::to_string(*dev)] = out;
    return true;
  };
  if (data->value.IsArray()) {
    if (data->value.Size() > 64) return refuse("more than 64 entries");
    for (const auto& e : data->value.GetArray())
      if (!take(e)) return refuse("malformed or out-of-range entry");
  } else if (!take(data->value)) {
    return refuse("malformed or out-of-range data");
  }
  StoreJob job;
  job.type = StoreJob::Type::emu_result;
  job.durable = true;
  job.product = id.product;
  job.device = id.device;
  job.fields = std::move(entries);
  gate_.effects.submit(std::move(job));
  return true;
}

}  // namespace iotgate
