// fuzz_acl_rules: the parsers of what Redis and the broker configuration hand the plugin: parse_account_rule,
// account_from_fields (the rules JSON), parse_pbkdf2_hash, product_from_fields / device_from_fields,
// parse_config, from_hex, and the registry that the changes stream keeps up to date.
//
// Input: SELECTOR REST; SELECTOR % 8 picks the parser:
//   0 parse_account_rule(REST)
//   1 account_from_fields: REST = PASSWORD_HASH \0 RULES_JSON \0 SUPERUSER
//   2 parse_pbkdf2_hash(REST)
//   3 product_from_fields: REST = ID \0 key=value \0 key=value ...
//   4 device_from_fields:  REST = DEVICE_ID \0 key=value \0 ...
//   5 parse_config:        REST = key=value \0 key=value ...
//   6 from_hex(REST)
//   7 registry changes: REST = 3-byte operations (put product / put device / delete product / delete device)
//     applied through Gate::on_update and compared with a model
//
// Invariants: no crash; what a parser accepts is well-formed (rule filters valid, ids usable as topic levels,
// ranges respected, numbers as written) and survives a round trip; what it refuses it says why; the EMU uid
// index of the registry finds every gateway whose uid is unique among EMU devices.
#include <charconv>
#include <map>
#include <set>

#include <rapidjson/document.h>

#include "fuzz_common.h"

using namespace iotgate;

namespace {

Fields fields_of(const std::vector<std::string>& parts, size_t from) {
  Fields f;
  for (size_t i = from; i < parts.size(); ++i) {
    size_t eq = parts[i].find('=');
    if (eq == std::string::npos) continue;
    f[parts[i].substr(0, eq)] = parts[i].substr(eq + 1);
  }
  return f;
}

std::vector<std::string> split_all(std::string_view s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    size_t z = s.find('\0', start);
    out.emplace_back(s.substr(start, z == std::string_view::npos ? std::string_view::npos : z - start));
    if (z == std::string_view::npos) break;
    start = z + 1;
  }
  return out;
}

std::string b64(const Bytes& in) {
  static const char* a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    uint32_t v = in[i] << 16 | in[i + 1] << 8 | in[i + 2];
    out += a[v >> 18 & 63];
    out += a[v >> 12 & 63];
    out += a[v >> 6 & 63];
    out += a[v & 63];
  }
  if (i + 1 == in.size()) {
    uint32_t v = in[i] << 16;
    out += a[v >> 18 & 63];
    out += a[v >> 12 & 63];
    out += "==";
  } else if (i + 2 == in.size()) {
    uint32_t v = in[i] << 16 | in[i + 1] << 8;
    out += a[v >> 18 & 63];
    out += a[v >> 12 & 63];
    out += a[v >> 6 & 63];
    out += '=';
  }
  return out;
}

bool int_of(const std::string& s, int64_t& out) {
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && ptr == s.data() + s.size();
}

const char* access_word(const AccountRule& r) { return r.read && r.write ? "readwrite" : r.read ? "read" : "write"; }

void account_rule(std::string_view text) {
  auto rule = parse_account_rule(text);
  if (!rule) return;
  FUZZ_CHECK("rule-no-access", rule->read || rule->write, "a rule with neither read nor write");
  FUZZ_CHECK("rule-invalid-filter", is_valid_filter(rule->filter) && rule->filter.front() != ' ' && rule->filter.back() != ' ',
             "accepted rule with filter '" + fuzz::printable(rule->filter) + "'");
  std::string again = std::string(access_word(*rule)) + " " + rule->filter;
  FUZZ_CHECK("rule-not-as-written", again == text,
             "rule '" + fuzz::printable(text) + "' parsed as '" + fuzz::printable(again) + "'");
}

void account(const std::vector<std::string>& p) {
  Fields f;
  if (!p[0].empty()) f["password_hash"] = p[0];
  f["rules"] = p[1];
  f["superuser"] = p[2];
  std::string err;
  auto a = account_from_fields("acct", f, &err);
  // What it should decide, from the parts.
  bool hash_ok = p[0].empty() || parse_pbkdf2_hash(p[0]).has_value();
  rapidjson::Document doc;
  doc.Parse(p[1].data(), p[1].size());
  bool rules_ok = !doc.HasParseError() && doc.IsArray();
  size_t n = 0;
  if (rules_ok)
    for (const auto& r : doc.GetArray()) {
      rules_ok = rules_ok && r.IsString() && parse_account_rule(std::string_view(r.GetString(), r.GetStringLength()));
      ++n;
    }
  FUZZ_CHECK("account-decision", a.has_value() == (hash_ok && rules_ok),
             "account_from_fields " + std::string(a ? "accepted" : "refused (" + err + ")") + " hash '" +
                 fuzz::printable(p[0]) + "' rules '" + fuzz::printable(p[1]) + "'");
  if (!a) {
    FUZZ_CHECK("account-no-reason", !err.empty(), "refused without a reason");
    return;
  }
  FUZZ_CHECK("account-rule-count", a->rules.size() == n, "rule count differs from the JSON array");
  FUZZ_CHECK("account-superuser", a->superuser == (p[2] == "1"), "superuser flag not as written");
  FUZZ_CHECK("account-hash", a->password_hash.has_value() == !p[0].empty(), "password hash presence differs");
  for (const auto& r : a->rules)
    FUZZ_CHECK("account-rule-filter", is_valid_filter(r.filter), "invalid filter kept: " + fuzz::printable(r.filter));
}

void pbkdf2(std::string_view text) {
  static const bool sane = [] {
    auto h = parse_pbkdf2_hash(make_pbkdf2_hash("pw", 2));
    return h && verify_pbkdf2(*h, "pw") && !verify_pbkdf2(*h, "pw2") && !verify_pbkdf2(*h, "");
  }();
  FUZZ_CHECK("pbkdf2-roundtrip-make", sane, "make_pbkdf2_hash does not verify");
  auto h = parse_pbkdf2_hash(text);
  if (!h) return;
  FUZZ_CHECK("pbkdf2-fields", h->iterations >= 1 && h->iterations <= 10'000'000 && !h->salt.empty() && h->hash.size() == 64,
             "accepted hash with iterations " + std::to_string(h->iterations) + ", salt " +
                 std::to_string(h->salt.size()) + " bytes, hash " + std::to_string(h->hash.size()) + " bytes");
  std::string canonical = "$7$" + std::to_string(h->iterations) + "$" + b64(h->salt) + "$" + b64(h->hash);
  auto again = parse_pbkdf2_hash(canonical);
  FUZZ_CHECK("pbkdf2-roundtrip", again && again->iterations == h->iterations && again->salt == h->salt && again->hash == h->hash,
             "'" + fuzz::printable(text) + "' does not survive re-encoding as '" + canonical + "'");
  if (h->iterations <= 16) verify_pbkdf2(*h, text);  // runs on any parsed hash
}

void product(const std::vector<std::string>& p) {
  Fields f = fields_of(p, 1);
  std::string err;
  auto prod = product_from_fields(p[0], f, &err);
  if (!prod) {
    FUZZ_CHECK("product-no-reason", !err.empty(), "refused without a reason");
    return;
  }
  FUZZ_CHECK("product-id-unsafe", is_topic_level_safe(prod->id) && prod->id == p[0],
             "accepted product id '" + fuzz::printable(prod->id) + "' is not one topic level");
  auto flag = [&](const char* k, bool dflt) { return f.count(k) ? f[k] == "1" : dflt; };
  FUZZ_CHECK("product-enabled", prod->enabled == flag("enabled", true), "enabled not as written");
  switch (prod->protocol) {
    case Protocol::lierda: {
      int64_t at = -1;
      FUZZ_CHECK("product-lierda-fields",
                 is_lierda_id(prod->id) && is_lierda_id(prod->openid) && is_hex_key(prod->product_key) &&
                     prod->auth_type >= 0 && prod->auth_type <= 2,
                 "malformed lierda product accepted");
      FUZZ_CHECK("product-auth-type-not-as-written", f.count("auth_type") && int_of(f["auth_type"], at) && at == prod->auth_type,
                 "auth_type '" + fuzz::printable(f.count("auth_type") ? f["auth_type"] : "(none)") + "' read as " +
                     std::to_string(prod->auth_type));
      FUZZ_CHECK("product-lierda-key-usable", lierda_session_key(prod->product_key, "4655434B", 128).has_value(),
                 "accepted ProductKey is not an AES key");
      break;
    }
    case Protocol::krt:
      FUZZ_CHECK("product-krt-fields", is_plain_id(prod->id) && !prod->product_secret.empty(), "malformed krt product accepted");
      break;
    case Protocol::emu:
      FUZZ_CHECK("product-emu-fields", is_plain_id(prod->id) && (prod->emu_namespace == "wudun" || prod->emu_namespace == "user"),
                 "malformed emu product accepted");
      break;
  }
}

void device_fields(const std::vector<std::string>& p) {
  Fields f = fields_of(p, 1);
  std::string err;
  auto d = device_from_fields("PK1", p[0], f, &err);
  if (!d) {
    FUZZ_CHECK("device-no-reason", !err.empty(), "refused without a reason");
    return;
  }
  bool has_hash = f.count("secret_hash") && !f["secret_hash"].empty();
  FUZZ_CHECK("device-hash", (d->secret_hash != nullptr) == has_hash, "secret_hash presence not as written");
  FUZZ_CHECK("device-secret", d->secret == (f.count("secret") ? f["secret"] : ""), "secret not as written");
  FUZZ_CHECK("device-enabled", d->enabled == (f.count("enabled") ? f["enabled"] == "1" : true), "enabled not as written");
  // Into a registry: found again, by key and (EMU) by uid.
  Registry r;
  Product emu;
  emu.id = "PK1";
  emu.protocol = Protocol::emu;
  emu.emu_namespace = "wudun";
  r.put_product(emu);
  r.put_device(*d);
  const Device* back = r.device("PK1", p[0]);
  FUZZ_CHECK("device-lookup", back && back->id == p[0], "device not found after put");
  const Device* by_uid = r.emu_device_by_uid(p[0]);
  FUZZ_CHECK("device-uid-lookup", by_uid == back, "EMU device not found by uid");
}

void config(const std::vector<std::string>& p) {
  std::vector<std::pair<std::string, std::string>> opts;
  for (const auto& part : p) {
    size_t eq = part.find('=');
    if (eq == std::string::npos) opts.emplace_back(part, "");
    else opts.emplace_back(part.substr(0, eq), part.substr(eq + 1));
  }
  auto parsed = parse_config(opts);
  if (auto* e = std::get_if<std::string>(&parsed)) {
    FUZZ_CHECK("config-error-unnamed", e->find("plugin_opt_") != std::string::npos, "error without option name: " + *e);
    return;
  }
  const Config& c = std::get<Config>(parsed);
  FUZZ_CHECK("config-ranges",
             c.redis_port >= 1 && c.redis_port <= 65535 && c.redis_db >= 0 && c.redis_db <= 1000 &&
                 c.redis_timeout_ms >= 50 && c.redis_timeout_ms <= 60000 && !c.key_prefix.empty() &&
                 c.key_prefix.size() <= 64 && c.clock_skew >= 0 && c.clock_skew <= 86400 && c.session_key_ttl >= 60 &&
                 c.session_key_ttl <= 365LL * 86400 && c.max_payload >= 256 && c.max_payload <= 16 * 1024 * 1024 &&
                 c.log_burst >= 1 && c.log_burst <= 100000 && c.log_window >= 1 && c.log_window <= 3600 &&
                 !c.redis_host.empty(),
             "accepted config out of range");
  // The last value given for each numeric option is the one in force, as written.
  std::map<std::string, std::string> last;
  for (const auto& [k, v] : opts) last[k] = v;
  const std::map<std::string, int64_t> numbers = {
      {"redis_port", c.redis_port},       {"redis_db", c.redis_db},     {"redis_timeout_ms", c.redis_timeout_ms},
      {"clock_skew", c.clock_skew},       {"session_key_ttl", c.session_key_ttl},
      {"max_payload", static_cast<int64_t>(c.max_payload)}, {"log_burst", c.log_burst}, {"log_window", c.log_window}};
  for (const auto& [k, v] : numbers) {
    auto it = last.find(k);
    if (it == last.end()) continue;
    int64_t n = 0;
    FUZZ_CHECK("config-not-as-written", int_of(it->second, n) && n == v,
               "plugin_opt_" + k + " '" + fuzz::printable(it->second) + "' read as " + std::to_string(v));
  }
  if (last.count("key_prefix")) FUZZ_CHECK("config-prefix", c.key_prefix == last["key_prefix"], "key_prefix not as written");
}

void hex(std::string_view text) {
  auto out = from_hex(text);
  bool all_hex = true;
  for (char c : text)
    all_hex = all_hex && ((c >= '0' && c <= '9') || (c >= 'A' && c <= 'F') || (c >= 'a' && c <= 'f'));
  FUZZ_CHECK("from-hex-decision", out.has_value() == (all_hex && text.size() % 2 == 0),
             "from_hex('" + fuzz::printable(text) + "') " + (out ? "accepted" : "refused"));
  if (out)
    FUZZ_CHECK("from-hex-roundtrip", out->size() * 2 == text.size() && to_hex_upper(*out) == fuzz::upper(text),
               "from_hex does not round-trip '" + fuzz::printable(text) + "'");
}

// The changes stream: products and devices come and go; the EMU uid index must keep finding gateways.
void registry_changes(std::string_view ops) {
  static const char* kProducts[] = {"E1", "E2", "K1"};  // two EMU products, one KRT
  static const char* kDevices[] = {"d0", "d1", "d2"};
  fuzz::FakeEffects fx;
  fuzz::LogLines log;
  Gate gate(Config{}, log.log, fx, [] { return fuzz::kNow; });
  Snapshot empty;
  empty.registry = std::make_unique<Registry>();
  gate.on_snapshot(std::move(empty));
  std::set<std::string> products;                    // model
  std::set<std::pair<std::string, std::string>> devices;
  for (size_t i = 0; i + 3 <= ops.size() && i < 96; i += 3) {
    int kind = static_cast<uint8_t>(ops[i]) % 4;
    std::string p = kProducts[static_cast<uint8_t>(ops[i + 1]) % 3], d = kDevices[static_cast<uint8_t>(ops[i + 2]) % 3];
    EntityUpdate u;
    switch (kind) {
      case 0:
        u.kind = EntityUpdate::Kind::product;
        u.id = p;
        u.fields = p[0] == 'E' ? Fields{{"protocol", "emu"}, {"namespace", "wudun"}}
                               : Fields{{"protocol", "krt"}, {"product_secret", "s"}};
        products.insert(p);
        break;
      case 1:
        if (!products.count(p)) continue;  // the CLI creates a product before its devices
        if (p[0] == 'E' && devices.count({p == "E1" ? "E2" : "E1", d})) continue;  // and keeps EMU uids unique
        u.kind = EntityUpdate::Kind::device;
        u.id = p + ":" + d;
        u.fields = Fields{{"enabled", "1"}, {"secret", "x"}};
        devices.insert({p, d});
        break;
      case 2:
        u.kind = EntityUpdate::Kind::product;
        u.id = p;
        products.erase(p);
        for (auto it = devices.begin(); it != devices.end();) it = it->first == p ? devices.erase(it) : std::next(it);
        break;
      case 3:
        u.kind = EntityUpdate::Kind::device;
        u.id = p + ":" + d;
        devices.erase({p, d});
        break;
    }
    gate.on_update(u);
    if (kind == 2) {  // a product deleted in Redis takes its devices along: their deletions follow in the stream
      for (const char* dd : kDevices) gate.on_update(EntityUpdate{EntityUpdate::Kind::device, p + ":" + dd, std::nullopt});
    }
    for (const char* uid : kDevices) {
      std::vector<std::string> owners;
      for (const auto& [dp, dd] : devices)
        if (dd == uid && dp[0] == 'E') owners.push_back(dp);
      const Device* found = gate.registry().emu_device_by_uid(uid);
      if (found)
        FUZZ_CHECK("emu-uid-stale",
                   devices.count({found->product.str(), found->id.str()}) && found->id == uid && found->product.view()[0] == 'E',
                   std::string("uid ") + uid + " finds " + found->product.str() + ":" + found->id.str());
      if (owners.size() == 1)
        FUZZ_CHECK("emu-uid-lost", found && found->product == owners[0],
                   std::string("EMU gateway ") + owners[0] + ":" + uid + " (the only one with that uid) is not found " +
                       "by its uid after operation " + std::to_string(i / 3) + " (" + std::to_string(kind) + " " + p +
                       " " + d + ")");
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 8) {
    case 0: account_rule(rest); break;
    case 1: account(fuzz::split_nul(rest, 3)); break;
    case 2: pbkdf2(rest); break;
    case 3: product(split_all(rest)); break;
    case 4: device_fields(split_all(rest)); break;
    case 5: config(split_all(rest)); break;
    case 6: hex(rest); break;
    case 7: registry_changes(rest); break;
  }
  return 0;
}
