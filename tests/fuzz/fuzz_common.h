// Shared pieces of the libFuzzer targets: invariant checks, input splitting, a fake Effects, and a registry
// fixture that covers every login kind. Header-only: each fuzz_<name>.cpp includes it once.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "iotgate/crypto.h"
#include "iotgate/gate.h"
#include "iotgate/identity.h"
#include "iotgate/ids.h"
#include "iotgate/model.h"
#include "iotgate/topic.h"

namespace fuzz {

// ------------------------------------------------------------------------------------------------------
// Invariants. A failed check prints its name and details and aborts, which libFuzzer reports as a crash and
// saves the input. IOTGATE_FUZZ_ALLOW="name,name" turns named checks off (for a finding already reported and
// not yet fixed, so the rest of a target can still be exercised); scripts/fuzz never sets it by itself.

inline bool check_allowed(const char* name) {
  static const std::string allow = [] {
    const char* v = std::getenv("IOTGATE_FUZZ_ALLOW");
    return std::string(",") + (v ? v : "") + ",";
  }();
  return allow.find(std::string(",") + name + ",") != std::string::npos;
}

inline std::string printable(std::string_view s, size_t max = 400) {
  std::string out;
  for (size_t i = 0; i < s.size() && i < max; ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out.push_back(static_cast<char>(c));
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  if (s.size() > max) out += "...(" + std::to_string(s.size()) + " bytes)";
  return out;
}

[[noreturn]] inline void fail(const char* name, const char* file, int line, const std::string& detail) {
  std::fprintf(stderr, "\n==iotgate-fuzz== INVARIANT VIOLATED: %s (%s:%d)\n%s\n", name, file, line, detail.c_str());
  std::fflush(stderr);
  std::abort();
}

// CHECK(name, condition, detail-expression): the detail is only built when the check fails.
#define FUZZ_CHECK(name, cond, detail)                                  \
  do {                                                                  \
    if (!(cond) && !::fuzz::check_allowed(name))                        \
      ::fuzz::fail(name, __FILE__, __LINE__, std::string() + (detail)); \
  } while (0)

// ------------------------------------------------------------------------------------------------------
// Input helpers

// Splits on NUL bytes; at most max_parts parts (the last one takes the rest, NULs included).
inline std::vector<std::string> split_nul(std::string_view data, size_t max_parts) {
  std::vector<std::string> parts;
  while (parts.size() + 1 < max_parts) {
    size_t z = data.find('\0');
    if (z == std::string_view::npos) break;
    parts.emplace_back(data.substr(0, z));
    data.remove_prefix(z + 1);
  }
  parts.emplace_back(data);
  while (parts.size() < max_parts) parts.emplace_back();
  return parts;
}

inline bool contains(std::string_view hay, std::string_view needle) {
  return !needle.empty() && hay.find(needle) != std::string_view::npos;
}
inline bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

inline std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  return out;
}

inline bool valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      i++;
      continue;
    }
    size_t n;
    uint32_t cp;
    if ((c & 0xE0) == 0xC0) n = 1, cp = c & 0x1F;
    else if ((c & 0xF0) == 0xE0) n = 2, cp = c & 0x0F;
    else if ((c & 0xF8) == 0xF0) n = 3, cp = c & 0x07;
    else return false;
    if (s.size() - i <= n) return false;
    for (size_t k = 1; k <= n; ++k) {
      unsigned char cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = cp << 6 | (cc & 0x3F);
    }
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += n + 1;
  }
  return true;
}

// ------------------------------------------------------------------------------------------------------
// The broker side, recorded.

struct Published {
  std::string client_id, topic, payload;
  int qos = 0;
};

struct FakeEffects : iotgate::Effects {
  std::vector<Published> published;    // to one client
  std::vector<Published> broadcasts;   // fan-out to subscribers (client_id empty)
  std::vector<std::string> kicks;
  std::vector<iotgate::StoreJob> jobs;
  void publish_to_client(const std::string& c, const std::string& t, const std::string& p, int qos) override {
    published.push_back({c, t, p, qos});
  }
  void publish(const std::string& t, const std::string& p, int qos) override { broadcasts.push_back({"", t, p, qos}); }
  void clear_retained(const std::string& t) override { broadcasts.push_back({"", t, "", 0}); }
  void kick(const std::string& c) override { kicks.push_back(c); }
  void submit(iotgate::StoreJob job) override { jobs.push_back(std::move(job)); }
};

// Collects every log line (no rate limit can hide one from the checks).
struct LogLines {
  std::vector<std::string> lines;
  iotgate::Log log{[this](iotgate::LogLevel, const std::string& s) { lines.push_back(s); }, iotgate::LogLevel::debug,
                   1 << 30, 3600};
};

// ------------------------------------------------------------------------------------------------------
// The registry fixture: every login kind, its refusals, and the secrets that must not leak.

constexpr int64_t kNow = 1675404867;  // the V2 test vector's timestamp

constexpr const char* kOpenid = "7ED01E2A";
constexpr const char* kOpenid2 = "11223344";
// Lierda products: id, auth type, ProductKey
constexpr const char* kL1 = "AA30C505";  // auth 1, the test vector product
constexpr const char* kL1Key = "DB6FACEF35BEBA0517712F0E4BE32936";
constexpr const char* kL0 = "AA30C500";  // auth 0 (free registration)
constexpr const char* kL0Key = "00112233445566778899AABBCCDDEE00";
constexpr const char* kL2 = "AA30C502";  // auth 2 (one device, one secret)
constexpr const char* kL2Key = "0F1E2D3C4B5A69788796A5B4C3D2E1F0";
constexpr const char* kLE = "AA30C50E";  // auth 1, encrypted
constexpr const char* kLEKey = "A0A1A2A3A4A5A6A7A8A9AAABACADAEAF";
constexpr const char* kLD = "AA30C5DD";  // auth 0, disabled
constexpr const char* kLDKey = "D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF";
constexpr const char* kLO = "CC30C505";  // auth 1, owned by kOpenid2
constexpr const char* kLOKey = "C0C1C2C3C4C5C6C7C8C9CACBCCCDCECF";

constexpr const char* kEui = "20MQTTJ000121";
constexpr const char* kSecret = "326086233FAB8A96566796551EB1DFF8";  // test vector DeviceSecret
constexpr const char* kSecretL0 = "5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A01";
constexpr const char* kSecretL2 = "5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A02";
constexpr const char* kSecretLE1 = "5A5A5A5A5A5A5A5A5A5A5A5A5A5A5AE1";
constexpr const char* kSecretLE2 = "5A5A5A5A5A5A5A5A5A5A5A5A5A5A5AE2";
constexpr const char* kSecretLO = "5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A0F";
constexpr const char* kSecretLX = "5A5A5A5A5A5A5A5A5A5A5A5A5A5A5AFF";  // disabled device
constexpr const char* kSessionKeyLE2 = "3F81A97DDA9B30089BB31CE21826E745";

constexpr const char* kKP1Secret = "krt-product-secret-KP1";  // dynamic registration, auto-create, limit 3
constexpr const char* kKP2Secret = "krt-product-secret-KP2";  // registration off
constexpr const char* kKP3Secret = "krt-product-secret-KP3";  // auto-create limit reached
constexpr const char* kKP4Secret = "krt-product-secret-KP4";  // disabled
constexpr const char* kKD1Secret = "krt-device-secret-KP1-KD1";
constexpr const char* kKD2Secret = "krt-device-secret-KP1-KD2";
constexpr const char* kKDXSecret = "krt-device-secret-KP1-KDX";
constexpr const char* kKP2KD1Secret = "krt-device-secret-KP2-KD1";
constexpr const char* kKP3A1Secret = "krt-device-secret-KP3-A1";

// mosquitto_passwd "$7$" hashes with 2 PBKDF2 iterations (fast), fixed salts.
constexpr const char* kGw1Pass = "gw1-pass-word";
constexpr const char* kGw1Hash =
    "$7$2$ZnV6enNhbHQwMDAx$KRz14ZjxOSXq3MLtClqLurCBf5epjI/F6kpE9JLmQj0OOOgukJolG95CWjwSUIr8H7kWw/olQSdyrNyjLo6wzw==";
constexpr const char* kGw2Pass = "gw2-pass-word";
constexpr const char* kGw2Hash =
    "$7$2$ZnV6enNhbHQwMDAy$DAEOJL6PJgLhvkENezNJ81Ao/Yt3hZHT4b47mcSGd/ghC3P/QYFZXJF/sSqgWXpZHB5iFFgf/vrJ2bDA0YIWYw==";
constexpr const char* kOpPass = "op-pass-word";
constexpr const char* kOpHash =
    "$7$2$ZnV6enNhbHQwMDAz$XPCjDIeretl4xcm74bZWnRuFu4vnehHLHrAZrzXweYwV5GJOIeT/smTLoNU6JfOybU1m4zgzeyBqnRrBr0smyg==";

inline iotgate::Product lierda_product(const char* id, const char* openid, const char* key, int auth_type,
                                       bool encrypted = false, bool enabled = true) {
  iotgate::Product p;
  p.id = id;
  p.protocol = iotgate::Protocol::lierda;
  p.openid = openid;
  p.product_key = key;
  p.auth_type = auth_type;
  p.encrypted = encrypted;
  p.enabled = enabled;
  return p;
}
inline iotgate::Product krt_product(const char* id, const char* secret, bool dynamic, bool auto_create, int64_t limit,
                                    bool enabled = true) {
  iotgate::Product p;
  p.id = id;
  p.protocol = iotgate::Protocol::krt;
  p.product_secret = secret;
  p.dynamic_register = dynamic;
  p.auto_create = auto_create;
  p.limit = limit;
  p.enabled = enabled;
  return p;
}
inline iotgate::Product emu_product(const char* id, const char* ns, bool enabled = true) {
  iotgate::Product p;
  p.id = id;
  p.protocol = iotgate::Protocol::emu;
  p.emu_namespace = ns;
  p.enabled = enabled;
  return p;
}
inline iotgate::Device device(const char* product, const char* id, const char* secret, bool enabled = true,
                              const char* origin = "cli") {
  iotgate::Device d;
  d.product = product;
  d.id = id;
  d.secret = secret;
  d.enabled = enabled;
  d.created_by_device = std::string_view(origin) == "auto" || std::string_view(origin) == "auth";
  return d;
}
inline iotgate::Device emu_device(const char* product, const char* id, const char* hash, bool enabled = true) {
  iotgate::Device d;
  d.product = product;
  d.id = id;
  d.enabled = enabled;
  if (auto parsed = hash ? iotgate::parse_pbkdf2_hash(hash) : std::nullopt)
    d.secret_hash = std::make_shared<const iotgate::Pbkdf2Hash>(std::move(*parsed));
  return d;
}

// Built once; each fuzz iteration gets a copy, so every run starts from the same state.
inline const iotgate::Registry& fixture() {
  static const iotgate::Registry reg = [] {
    using namespace iotgate;
    Registry r;
    r.put_product(lierda_product(kL1, kOpenid, kL1Key, 1));
    r.put_product(lierda_product(kL0, kOpenid, kL0Key, 0));
    r.put_product(lierda_product(kL2, kOpenid, kL2Key, 2));
    r.put_product(lierda_product(kLE, kOpenid, kLEKey, 1, true));
    r.put_product(lierda_product(kLD, kOpenid, kLDKey, 0, false, false));
    r.put_product(lierda_product(kLO, kOpenid2, kLOKey, 1));
    Device v = device(kL1, kEui, kSecret);
    v.last_offline = kNow - 867;  // type-1 timestamps at or before this are replays
    r.put_device(v);
    r.put_device(device(kL1, "DISABLED01", kSecretLX, false));
    r.put_device(device(kL1, "NOSECRET01", ""));
    r.put_device(device(kL0, "FREEDEV001", kSecretL0, true, "auth"));
    r.put_device(device(kL2, "TYPE2DEV01", kSecretL2));
    r.put_device(device(kLE, "ENCDEV0001", kSecretLE1));  // no session key yet: a V2 login starts a rekey
    Device e2 = device(kLE, "ENCDEV0002", kSecretLE2);
    e2.session = std::make_shared<const SessionKey>(SessionKey{"4655434B", 128, kSessionKeyLE2, kNow + 86400});
    r.put_device(e2);
    r.put_device(device(kLD, "OFFPRODDEV", kSecretLX));
    r.put_device(device(kLO, kEui, kSecretLO));

    r.put_product(krt_product("KP1", kKP1Secret, true, true, 3));
    r.put_product(krt_product("KP2", kKP2Secret, false, false, 0));
    r.put_product(krt_product("KP3", kKP3Secret, true, true, 1));
    r.put_product(krt_product("KP4", kKP4Secret, true, true, 0, false));
    r.put_device(device("KP1", "KD1", kKD1Secret));  // has a secret, not activated
    Device kd2 = device("KP1", "KD2", kKD2Secret);
    kd2.activated = true;
    r.put_device(kd2);
    r.put_device(device("KP1", "KD3", ""));  // pre-created, no secret yet
    r.put_device(device("KP1", "KDX", kKDXSecret, false));
    r.put_device(device("KP1", "AUTO1", "", true, "auto"));
    Device kp2 = device("KP2", "KD1", kKP2KD1Secret);
    kp2.activated = true;
    r.put_device(kp2);
    r.put_device(device("KP3", "A1", kKP3A1Secret, true, "auto"));

    r.put_product(emu_product("PK1", "wudun"));
    r.put_product(emu_product("T1", "user"));
    r.put_product(emu_product("PK2", "wudun", false));
    r.put_device(emu_device("PK1", "gw1", kGw1Hash));
    r.put_device(emu_device("T1", "gw2", kGw2Hash));
    r.put_device(emu_device("PK2", "gw3", kGw1Hash));
    r.put_device(emu_device("PK1", "gw4", kGw1Hash, false));
    r.put_device(emu_device("PK1", "gw5", nullptr));

    Account op;
    op.name = "operator";
    op.password_hash = parse_pbkdf2_hash(kOpHash);
    for (const char* rule : {"read /sys/#", "readwrite app/%u/#", "write cmd/%c/+", "read v1/+/+/+/ota/+/result"})
      op.rules.push_back(*parse_account_rule(rule));
    r.put_account(op);
    Account admin;
    admin.name = "admin";
    admin.password_hash = parse_pbkdf2_hash(kOpHash);
    admin.superuser = true;
    r.put_account(admin);
    Account nopass;
    nopass.name = "nopass";
    nopass.rules.push_back(*parse_account_rule("read #"));
    r.put_account(nopass);
    return r;
  }();
  return reg;
}

// Every secret of the fixture: none may ever appear in a log line, and only a device's own DeviceSecret may
// appear in a reply, in the field meant for it.
inline const std::vector<std::string>& fixture_secrets() {
  static const std::vector<std::string> s = {
      kL1Key, kL0Key, kL2Key, kLEKey, kLDKey, kLOKey, kSecret, kSecretL0, kSecretL2, kSecretLE1, kSecretLE2,
      kSecretLO, kSecretLX, kSessionKeyLE2, kKP1Secret, kKP2Secret, kKP3Secret, kKP4Secret, kKD1Secret,
      kKD2Secret, kKDXSecret, kKP2KD1Secret, kKP3A1Secret, kGw1Pass, kGw2Pass, kOpPass,
      // the V2 test vector passwords are secrets too
      "5EB6BBC8DE5233E632389FA3E8E133F14DC0378BDDE5EDD73E64F682A79D1451"};
  return s;
}

struct GateUnderTest {
  FakeEffects effects;
  LogLines log;
  int64_t now = kNow;
  iotgate::Gate gate;
  explicit GateUnderTest(iotgate::Config config = {}, int64_t clock = kNow, iotgate::OtaData ota = {})
      : now(clock), gate(std::move(config), log.log, effects, [this] { return now; }) {
    iotgate::Snapshot snap;
    snap.registry = std::make_unique<iotgate::Registry>(fixture());
    snap.ota = std::move(ota);
    gate.on_snapshot(std::move(snap));
    log.lines.clear();
  }
};

}  // namespace fuzz
