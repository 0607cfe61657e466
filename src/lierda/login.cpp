// Lierda logins: the AUTH session (ProductKey) and the V2 session (DeviceSecret password), their credentials, and
// when an open Lierda session stops being valid.
#include <charconv>

#include "iotgate/crypto.h"
#include "iotgate/ids.h"
#include "iotgate/lierda/lierda.h"

namespace iotgate {
namespace {

std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  return out;
}

}  // namespace

std::optional<std::string> lierda_v2_password(std::string_view device_secret_hex, std::string_view product_id,
                                              std::string_view node_eui, std::string_view product_key,
                                              std::optional<int64_t> timestamp) {
  auto key = from_hex(device_secret_hex);
  if (!key || key->size() != 16) return std::nullopt;
  std::string plaintext;
  plaintext.reserve(product_id.size() + node_eui.size() + product_key.size() + 24);
  plaintext.append(product_id).append(".").append(node_eui).append("_").append(product_key);
  if (timestamp) plaintext.append("_").append(std::to_string(*timestamp));
  return to_hex_upper(aes128_ecb_encrypt(*key, plaintext));
}

std::optional<std::string> lierda_session_key(std::string_view product_key_hex, std::string_view session_id,
                                              uint32_t nonce) {
  auto key = from_hex(product_key_hex);
  if (!key || key->size() != 16) return std::nullopt;
  char nonce_hex[9];
  auto res = std::to_chars(nonce_hex, nonce_hex + sizeof nonce_hex, nonce, 16);
  std::string plaintext(session_id);
  plaintext.append(nonce_hex, res.ptr);
  Bytes out = aes128_ecb_encrypt(*key, plaintext);
  return to_hex_upper(out.data(), 16);
}

std::optional<Resolution> LierdaModule::resolve(std::string_view client_id, std::string_view username,
                                                PasswordArg password) {
  if (username.substr(0, 5) == "AUTH-") return resolve_auth(client_id, username, password);
  if (client_id.substr(0, 3) == "V2_") return resolve_v2(client_id, username, password);
  return std::nullopt;
}

Resolution LierdaModule::resolve_auth(std::string_view cid, std::string_view user, PasswordArg password) {
  // username AUTH-${OpenID}-${ProductID}, client id ${ProductID}-${NodeEui}
  if (user.size() != 5 + 8 + 1 + 8 || user[13] != '-' || !is_lierda_id(user.substr(5, 8)) ||
      !is_lierda_id(user.substr(14, 8)))
    return {std::nullopt, {"malformed-username", "malformed AUTH username"}};
  std::string openid(user.substr(5, 8)), pid(user.substr(14, 8));
  if (cid.size() < 9 || cid.substr(0, 8) != pid || cid[8] != '-')
    return {std::nullopt, {"client-id-mismatch", "client id is not ${ProductID}-${NodeEui} of the username"}};
  std::string eui(cid.substr(9));
  if (!is_node_eui(eui)) return {std::nullopt, {"invalid-node-eui", "invalid NodeEui (4-32 letters and digits)"}};
  const Product* p = gate_.registry.product(pid);
  if (!p || p->protocol != Protocol::lierda) return {std::nullopt, {"unknown-product", "unknown product " + pid}};
  if (p->openid != openid) return {std::nullopt, {"openid-mismatch", "OpenID does not own product " + pid}};
  if (!p->enabled) return {std::nullopt, {"product-disabled", "product " + pid + " is disabled"}};
  if (password && (!*password || !constant_time_equal(upper(**password), p->product_key)))
    return {std::nullopt, {"wrong-product-key", "wrong ProductKey"}};
  if (const Device* d = gate_.registry.device(pid, eui); d && !d->enabled)
    return {std::nullopt, {"device-disabled", "device " + eui + " is disabled"}};
  Identity id;
  id.kind = SessionKind::lierda_auth;
  id.product = pid;
  id.device = eui;
  id.openid = openid;
  id.prefix = lierda_prefix(openid, pid, eui);
  return {id, {}};
}

Resolution LierdaModule::resolve_v2(std::string_view cid, std::string_view user, PasswordArg password) {
  // V2_${ProductID}.${NodeEui}_${type}_${timestamp}
  std::string_view rest = cid.substr(3);
  size_t last = rest.rfind('_');
  size_t mid = last == std::string_view::npos || last == 0 ? std::string_view::npos : rest.rfind('_', last - 1);
  if (mid == std::string_view::npos || rest.size() < 10 || rest[8] != '.')
    return {std::nullopt, {"malformed-client-id", "malformed V2 client id"}};
  std::string pid(rest.substr(0, 8)), eui(rest.substr(9, mid - 9));
  std::string_view type_text = rest.substr(mid + 1, last - mid - 1), ts_text = rest.substr(last + 1);
  int64_t ts = 0;
  // At most 19 digits (a Unix time in seconds or milliseconds fits in far fewer), canonical (parse_decimal).
  if (!is_lierda_id(pid) || (type_text != "0" && type_text != "1") || ts_text.size() > 19 ||
      !parse_decimal(ts_text, ts) || ts < 0)
    return {std::nullopt, {"malformed-client-id", "malformed V2 client id"}};
  if (!is_node_eui(eui)) return {std::nullopt, {"invalid-node-eui", "invalid NodeEui (4-32 letters and digits)"}};
  const Product* p = gate_.registry.product(pid);
  if (!p || p->protocol != Protocol::lierda) return {std::nullopt, {"unknown-product", "unknown product " + pid}};
  std::string expected_user = p->openid + "-" + pid + "-" + eui;
  if (user != expected_user)
    return {std::nullopt, {"username-mismatch", "username is not ${OpenID}-${ProductID}-${NodeEui} of the client id"}};
  if (!p->enabled) return {std::nullopt, {"product-disabled", "product " + pid + " is disabled"}};
  Device* d = gate_.registry.device_mut(pid, eui);
  if (!d) return {std::nullopt, {"unknown-device", "unknown device " + eui}};
  if (!d->enabled) return {std::nullopt, {"device-disabled", "device " + eui + " is disabled"}};
  if (password) {
    bool type1 = type_text == "1";
    if (type1) {
      int64_t now = gate_.clock();
      if (ts <= d->last_offline)
        return {std::nullopt,
                {"stale-timestamp", "type 1 timestamp " + std::to_string(ts) +
                                        " is not after the device's last offline time " +
                                        std::to_string(d->last_offline) + " (replayed password?)"}};
      if (ts > now + gate_.config.clock_skew)
        return {std::nullopt, {"future-timestamp", "type 1 timestamp " + std::to_string(ts) + " is in the future"}};
    }
    auto expected = lierda_v2_password(d->secret, pid, eui, p->product_key, type1 ? std::optional<int64_t>(ts) : std::nullopt);
    if (!expected) return {std::nullopt, {"no-secret", "device has no DeviceSecret"}};
    if (!*password || !constant_time_equal(upper(**password), *expected))
      return {std::nullopt, {"wrong-password", "wrong V2 password"}};
  }
  Identity id;
  id.kind = SessionKind::lierda_v2;
  id.product = pid;
  id.device = eui;
  id.openid = p->openid;
  id.prefix = lierda_prefix(p->openid, pid, eui);
  if (type_text == "1") id.type1_timestamp = ts;
  return {id, {}, d};
}

void LierdaModule::on_login(const std::string& client_id, const void* handle, const Identity& id, Device& device,
                            Touch& touch) {
  (void)touch;
  if (id.kind != SessionKind::lierda_v2) return;
  const Product* p = gate_.registry.product(id.product);
  // The V2 session is where an encrypted device learns its key (the AUTH session proves only the ProductKey).
  if (!p || !p->encrypted) return;
  if (device.session_key().empty() || device.session->expires <= gate_.clock()) start_rekey(client_id, handle, id, *p);
  else gate_.replies.due(key_notice(client_id, handle, id));
}

std::optional<std::string> LierdaModule::invalid_reason(const Identity& id, const Product& product) const {
  if (product.openid != id.openid) return "product changed";
  return std::nullopt;
}

std::optional<std::pair<std::string, std::string>> LierdaModule::device_of_topic(
    const std::vector<std::string_view>& levels) const {
  // /sys/{OpenID}/{ProductID}/{NodeEui}/
  if (levels.size() != 5 || !levels[0].empty() || levels[1] != "sys") return std::nullopt;
  const Product* p = gate_.registry.product(std::string(levels[3]));
  if (!p || p->protocol != Protocol::lierda || p->openid != levels[2] ||
      !gate_.registry.device(p->id, std::string(levels[4])))
    return std::nullopt;
  return std::pair{p->id, std::string(levels[4])};
}

}  // namespace iotgate
