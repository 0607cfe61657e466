#include "iotgate/model.h"

#include <algorithm>
#include <charconv>

#include <rapidjson/document.h>

#include "iotgate/accounts/accounts.h"
#include "iotgate/ids.h"
#include "iotgate/topic.h"

namespace iotgate {
namespace {
const std::string* field(const Fields& f, const char* name) {
  auto it = f.find(name);
  return it == f.end() ? nullptr : &it->second;
}
std::string value_or(const Fields& f, const char* name, const char* fallback) {
  const std::string* v = field(f, name);
  return v ? *v : fallback;
}
bool flag(const Fields& f, const char* name, bool fallback = false) {
  const std::string* v = field(f, name);
  return v ? *v == "1" : fallback;
}
int64_t int_or(const Fields& f, const char* name, int64_t fallback) {
  const std::string* v = field(f, name);
  int64_t out = 0;
  return v && parse_decimal(*v, out) ? out : fallback;
}
bool fail(std::string* error, std::string message) {
  if (error) *error = std::move(message);
  return false;
}
}  // namespace

const char* to_string(Protocol p) {
  switch (p) {
    case Protocol::lierda: return "lierda";
    case Protocol::krt: return "krt";
    case Protocol::emu: return "emu";
  }
  return "?";
}

std::optional<Protocol> parse_protocol(std::string_view s) {
  if (s == "lierda") return Protocol::lierda;
  if (s == "krt") return Protocol::krt;
  if (s == "emu") return Protocol::emu;
  return std::nullopt;
}

std::string device_key(std::string_view product, std::string_view device) {
  std::string k;
  k.reserve(product.size() + device.size() + 1);
  k.append(product).append(":").append(device);
  return k;
}

std::optional<Product> product_from_fields(const std::string& id, const Fields& f, std::string* error) {
  Product p;
  p.id = id;
  auto protocol = parse_protocol(value_or(f, "protocol", ""));
  if (!protocol) return fail(error, "product " + id + ": unknown protocol"), std::nullopt;
  p.protocol = *protocol;
  p.enabled = flag(f, "enabled", true);
  switch (p.protocol) {
    case Protocol::lierda:
      p.openid = value_or(f, "openid", "");
      p.product_key = value_or(f, "product_key", "");
      p.auth_type = static_cast<int>(std::clamp<int64_t>(int_or(f, "auth_type", -1), -1, 3));  // range-checked below
      p.encrypted = flag(f, "encrypted");
      p.limit = int_or(f, "limit", 1000);
      if (!is_lierda_id(id) || !is_lierda_id(p.openid) || !is_hex_key(p.product_key) || p.auth_type < 0 ||
          p.auth_type > 2)
        return fail(error, "product " + id + ": malformed lierda fields"), std::nullopt;
      break;
    case Protocol::krt:
      p.product_secret = value_or(f, "product_secret", "");
      p.dynamic_register = flag(f, "dynamic_register");
      p.auto_create = flag(f, "auto_create");
      p.limit = int_or(f, "limit", 1000);
      if (!is_plain_id(id) || p.product_secret.empty())
        return fail(error, "product " + id + ": malformed krt fields"), std::nullopt;
      break;
    case Protocol::emu:
      p.emu_namespace = value_or(f, "namespace", "");
      if (!is_plain_id(id) || (p.emu_namespace != "wudun" && p.emu_namespace != "user"))
        return fail(error, "product " + id + ": malformed emu fields"), std::nullopt;
      break;
  }
  return p;
}

std::optional<Device> device_from_fields(const std::string& product, const std::string& id, const Fields& f,
                                         std::string* error) {
  Device d;
  d.product = product;
  d.id = id;
  d.enabled = flag(f, "enabled", true);
  d.origin = value_or(f, "origin", "cli");
  d.secret = value_or(f, "secret", "");
  if (const std::string* h = field(f, "secret_hash"); h && !h->empty()) {
    d.secret_hash = parse_pbkdf2_hash(*h);
    if (!d.secret_hash) return fail(error, "device " + product + ":" + id + ": malformed secret_hash"), std::nullopt;
  }
  d.activated = flag(f, "activated");
  d.last_online = int_or(f, "last_online", 0);
  d.last_offline = int_or(f, "last_offline", 0);
  d.session_id = value_or(f, "session_id", "");
  d.nonce = static_cast<uint32_t>(int_or(f, "nonce", 0));
  d.session_key = value_or(f, "session_key", "");
  d.session_key_expires = int_or(f, "session_key_expires", 0);
  return d;
}

std::optional<Account> account_from_fields(const std::string& name, const Fields& f, std::string* error) {
  Account a;
  a.name = name;
  a.superuser = flag(f, "superuser");
  if (const std::string* h = field(f, "password_hash"); h && !h->empty()) {
    a.password_hash = parse_pbkdf2_hash(*h);
    if (!a.password_hash) return fail(error, "account " + name + ": malformed password_hash"), std::nullopt;
  }
  std::string rules = value_or(f, "rules", "[]");
  rapidjson::Document doc;
  doc.Parse(rules.c_str(), rules.size());
  if (doc.HasParseError() || !doc.IsArray()) return fail(error, "account " + name + ": rules is not a JSON array"), std::nullopt;
  for (const auto& r : doc.GetArray()) {
    if (!r.IsString()) return fail(error, "account " + name + ": a rule is not a string"), std::nullopt;
    auto rule = parse_account_rule(std::string_view(r.GetString(), r.GetStringLength()));
    if (!rule) return fail(error, "account " + name + ": malformed rule"), std::nullopt;
    a.rules.push_back(std::move(*rule));
  }
  return a;
}

const Product* Registry::product(const std::string& id) const {
  auto it = products_.find(id);
  return it == products_.end() ? nullptr : &it->second;
}
const Device* Registry::device(const std::string& product, const std::string& id) const {
  auto it = devices_.find(device_key(product, id));
  return it == devices_.end() ? nullptr : &it->second;
}
Device* Registry::device_mut(const std::string& product, const std::string& id) {
  auto it = devices_.find(device_key(product, id));
  return it == devices_.end() ? nullptr : &it->second;
}
const Account* Registry::account(const std::string& name) const {
  auto it = accounts_.find(name);
  return it == accounts_.end() ? nullptr : &it->second;
}
const Device* Registry::emu_device_by_uid(const std::string& uid) const {
  auto it = emu_uids_.find(uid);
  if (it == emu_uids_.end()) return nullptr;
  auto d = devices_.find(it->second);
  return d == devices_.end() ? nullptr : &d->second;
}
size_t Registry::auto_created(const std::string& product) const {
  auto it = auto_created_.find(product);
  return it == auto_created_.end() ? 0 : it->second;
}
void Registry::count_origin(const Device& d, int delta) {
  if (d.origin != "auto" && d.origin != "auth") return;
  size_t& n = auto_created_[d.product];
  n = delta > 0 ? n + 1 : (n > 0 ? n - 1 : 0);
}

void Registry::put_product(Product p) {
  std::string id = p.id;
  products_[id] = std::move(p);
}
void Registry::remove_product(const std::string& id) {
  products_.erase(id);
  auto_created_.erase(id);
  for (auto it = devices_.begin(); it != devices_.end();) {
    if (it->second.product == id) {
      // Only the uid entry that points at this very device: another product's gateway may share the id.
      auto uid = emu_uids_.find(it->second.id);
      if (uid != emu_uids_.end() && uid->second == it->first) emu_uids_.erase(uid);
      it = devices_.erase(it);
    } else {
      ++it;
    }
  }
}
void Registry::put_device(Device d) {
  std::string key = device_key(d.product, d.id);
  if (const Product* p = product(d.product); p && p->protocol == Protocol::emu) emu_uids_[d.id] = key;
  auto it = devices_.find(key);
  if (it != devices_.end()) count_origin(it->second, -1);
  count_origin(d, +1);
  devices_[key] = std::move(d);
}
void Registry::remove_device(const std::string& product, const std::string& id) {
  auto it = devices_.find(device_key(product, id));
  if (it == devices_.end()) return;
  auto uid = emu_uids_.find(id);
  if (uid != emu_uids_.end() && uid->second == it->first) emu_uids_.erase(uid);
  count_origin(it->second, -1);
  devices_.erase(it);
}
void Registry::put_account(Account a) {
  std::string name = a.name;
  accounts_[name] = std::move(a);
}
void Registry::remove_account(const std::string& name) { accounts_.erase(name); }

}  // namespace iotgate
