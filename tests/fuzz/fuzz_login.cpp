// fuzz_login: the credential parsers (Gate::authenticate) and the ACL decisions of the resulting sessions
// (Gate::check_acl), on a gate loaded with a registry that covers every login kind (fuzz_common.h).
//
// Input: FLAGS CLIENT_ID \0 USERNAME \0 TOPIC \0 PASSWORD   (the password takes the rest, NULs included)
//   FLAGS bit 0: a username is given; bit 1: a password is given; bits 2-3: the access checked on TOPIC
//   (read, write, subscribe, unsubscribe); bit 4: bytes 0x01 in the client id, username and topic become NUL
//   (mosquitto refuses NUL there, the core must not care); bits 5-7: the gate's clock (see kClocks).
//
// Invariants: no crash; a refused login leaves no session and no side effect; an accepted login's session has
// a prefix without + # or NUL, and the credentials really were right (checked independently of the gate);
// an accepted V2 login's client id starts with V2_ and spells the session's device; the ACL of a live
// session is device_session_allows / account_allows of its identity; after the session is gone, the ACL of
// the same names (wills, retained-source checks) is the same; a repeated login gives the same answer and an
// altered password is refused (the PBKDF2 cache); no secret of the registry, and not the password, is logged.
#include <string>

#include "fuzz_common.h"

using namespace iotgate;

namespace {

constexpr int64_t kClocks[8] = {fuzz::kNow,      fuzz::kNow - 1000, fuzz::kNow + 30,         fuzz::kNow + 60,
                                fuzz::kNow + 61, fuzz::kNow - 867,  fuzz::kNow + 365 * 86400, 0};

bool parse_ts(std::string_view s, int64_t& out) {
  if (s.empty() || s.size() > 19) return false;
  int64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    if (v > (INT64_MAX - (c - '0')) / 10) return false;
    v = v * 10 + (c - '0');
  }
  out = v;
  return true;
}

const char* kind_name(SessionKind k) { return to_string(k); }

// Independent of Gate: were these the right credentials for this identity?
std::string credential_problem(const Identity& id, std::string_view cid, std::string_view user,
                               const std::optional<std::string>& pw, int64_t now, int64_t skew) {
  const Registry& reg = fuzz::fixture();
  if (!pw) return "accepted without a password";
  if (id.kind == SessionKind::account) {
    const Account* a = reg.account(id.account);
    if (!a || !a->password_hash) return "account without a password hash";
    if (!verify_pbkdf2(*a->password_hash, *pw)) return "wrong account password accepted";
    return "";
  }
  const Product* p = reg.product(id.product);
  if (!p) return "unknown product";
  if (!p->enabled) return "product disabled";
  const Device* d = reg.device(id.product, id.device);
  if (d && !d->enabled) return "device disabled";
  switch (id.kind) {
    case SessionKind::lierda_auth:
      if (p->protocol != Protocol::lierda) return "not a lierda product";
      if (fuzz::upper(*pw) != p->product_key) return "wrong ProductKey accepted";
      if (user != "AUTH-" + p->openid + "-" + p->id) return "username does not name the product";
      if (cid != p->id + "-" + id.device) return "client id does not name the device";
      return "";
    case SessionKind::lierda_v2: {
      if (p->protocol != Protocol::lierda) return "not a lierda product";
      if (!d || d->secret.empty()) return "device without a secret";
      std::string head = "V2_" + p->id + "." + id.device + "_";
      if (!fuzz::starts_with(cid, head)) return "client id does not spell V2_${ProductID}.${NodeEui}_";
      std::string_view rest = cid.substr(head.size());
      if (rest.size() < 3 || (rest[0] != '0' && rest[0] != '1') || rest[1] != '_') return "bad type in client id";
      int64_t ts = 0;
      if (!parse_ts(rest.substr(2), ts)) return "bad timestamp in client id";
      bool type1 = rest[0] == '1';
      if (type1 && ts <= d->last_offline) return "replayed type 1 timestamp accepted";
      if (type1 && ts > now + skew) return "future type 1 timestamp accepted";
      auto expected = lierda_v2_password(d->secret, p->id, id.device, p->product_key,
                                         type1 ? std::optional<int64_t>(ts) : std::nullopt);
      if (!expected || fuzz::upper(*pw) != *expected) return "wrong V2 password accepted";
      if (user != p->openid + "-" + p->id + "-" + id.device) return "username does not name the device";
      return "";
    }
    case SessionKind::krt_device:
      if (p->protocol != Protocol::krt) return "not a krt product";
      if (!d || d->secret.empty() || *pw != d->secret) return "wrong DeviceSecret accepted";
      if (user != id.device) return "username is not the DeviceID";
      return "";
    case SessionKind::krt_register:
      if (p->protocol != Protocol::krt) return "not a krt product";
      if (*pw != p->product_secret) return "wrong ProductSecret accepted";
      if (!p->dynamic_register) return "registration while dynamic registration is off";
      if (d && d->activated) return "registration of an activated device";
      if (!d && !p->auto_create) return "registration of an unknown device without auto-create";
      if (!d && p->limit > 0 && static_cast<int64_t>(reg.auto_created(p->id)) >= p->limit)
        return "registration beyond the auto-create limit";
      if (user != id.device) return "username is not the DeviceID";
      return "";
    case SessionKind::emu_gateway:
      if (p->protocol != Protocol::emu) return "not an emu product";
      if (!d || !d->secret_hash) return "gateway without a password hash";
      if (!verify_pbkdf2(*d->secret_hash, *pw)) return "wrong gateway password accepted";
      if (user != id.device) return "username is not the gateway uid";
      return "";
    case SessionKind::account:
      break;
  }
  return "";
}

std::string expected_prefix(const Identity& id) {
  const Product* p = fuzz::fixture().product(id.product);
  if (!p) return "?";
  switch (id.kind) {
    case SessionKind::lierda_auth:
    case SessionKind::lierda_v2: return lierda_prefix(p->openid, id.product, id.device);
    case SessionKind::krt_register:
    case SessionKind::krt_device: return krt_prefix(id.product, id.device);
    case SessionKind::emu_gateway: return emu_prefix(p->emu_namespace, id.product, id.device);
    case SessionKind::account: return "";
  }
  return "?";
}

bool secretish(std::string_view pw) {
  if (pw.size() < 16) return false;
  for (char c : pw)
    if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'))) return false;
  return true;
}

bool verify_fixture() {
  const Registry& r = fuzz::fixture();
  return verify_pbkdf2(*r.emu_device_by_uid("gw1")->secret_hash, fuzz::kGw1Pass) &&
         verify_pbkdf2(*r.emu_device_by_uid("gw2")->secret_hash, fuzz::kGw2Pass) &&
         verify_pbkdf2(*r.account("operator")->password_hash, fuzz::kOpPass);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const bool fixture_ok = verify_fixture();
  if (!fixture_ok) fuzz::fail("harness-fixture", __FILE__, __LINE__, "fixture hashes do not verify");
  if (size < 1) return 0;
  const uint8_t flags = data[0];
  auto parts = fuzz::split_nul(std::string_view(reinterpret_cast<const char*>(data) + 1, size - 1), 4);
  if (flags & 0x10)
    for (int i = 0; i < 4; ++i)
      for (char& c : parts[i])
        if (c == '\x01') c = '\0';
  const std::string& cid = parts[0];
  std::optional<std::string> user, pw;
  if (flags & 0x01) user = parts[1];
  if (flags & 0x02) pw = parts[3];
  const std::string& topic = parts[2];
  const Access access = static_cast<Access>((flags >> 2) & 3);
  const int64_t now = kClocks[(flags >> 5) & 7];
  std::optional<std::string_view> user_v, pw_v;
  if (user) user_v = *user;
  if (pw) pw_v = *pw;
  // ACL checks get the broker's NUL-terminated names; the broker refuses a CONNECT whose names contain a NUL, so
  // such names are tried on the login only.
  const char* user_c = user ? user->c_str() : nullptr;
  const bool broker_names = cid.find('\0') == std::string::npos && (!user || user->find('\0') == std::string::npos);
  auto describe = [&] {
    return "client id '" + fuzz::printable(cid) + "' username " + (user ? "'" + fuzz::printable(*user) + "'" : "none") +
           " password " + (pw ? "'" + fuzz::printable(*pw) + "'" : "none") + " topic '" + fuzz::printable(topic) +
           "' access " + std::to_string(static_cast<int>(access)) + " now " + std::to_string(now);
  };

  Config config;
  fuzz::GateUnderTest g(config, now);
  Gate& gate = g.gate;

  // Names only, before any login (a will of a client the broker never authenticated through us).
  if (broker_names) gate.check_acl(cid.c_str(), nullptr, user_c, access, topic);
  FUZZ_CHECK("acl-side-effect", g.effects.jobs.empty() && g.effects.published.empty() && g.effects.kicks.empty(),
             "an ACL check had side effects: " + describe());
  FUZZ_CHECK("acl-created-session", gate.session_count() == 0, "an ACL check created a session: " + describe());

  int handle1 = 0, handle2 = 0;
  ClientInfo client{cid, user_v, "192.0.2.1", &handle1};
  const bool accepted = gate.authenticate(client, pw_v);
  const Identity* s = gate.session(cid);
  if (!accepted) {
    FUZZ_CHECK("refused-login-has-session", s == nullptr && gate.session_count() == 0,
               "a refused login left a session: " + describe());
    FUZZ_CHECK("refused-login-side-effect",
               g.effects.jobs.empty() && g.effects.published.empty() && g.effects.kicks.empty(),
               "a refused login submitted, published or kicked: " + describe());
  } else {
    FUZZ_CHECK("accepted-login-no-session", s != nullptr, "accepted login without a session: " + describe());
    const Identity id = *s;
    auto who = [&] {
      return std::string(" session ") + kind_name(id.kind) + " product '" + fuzz::printable(id.product) +
             "' device '" + fuzz::printable(id.device) + "' prefix '" + fuzz::printable(id.prefix) + "' account '" +
             fuzz::printable(id.account) + "'; " + describe();
    };
    FUZZ_CHECK("prefix-wildcard", id.prefix.find_first_of(std::string("+#\0", 3)) == std::string::npos,
               "session prefix contains + # or NUL:" + who());
    if (id.kind == SessionKind::lierda_v2)
      FUZZ_CHECK("v2-client-id", fuzz::starts_with(cid, "V2_"), "V2 session without V2_ client id:" + who());
    if (id.kind == SessionKind::account) {
      FUZZ_CHECK("account-prefix", id.prefix.empty() && fuzz::fixture().account(id.account),
                 "account session with a prefix or unknown account:" + who());
    } else {
      FUZZ_CHECK("device-id-unsafe", is_topic_level_safe(id.device) && is_topic_level_safe(id.product),
                 "device session with an id that is not one topic level:" + who());
      FUZZ_CHECK("prefix-shape", id.prefix == expected_prefix(id), "unexpected prefix:" + who());
    }
    std::string problem = credential_problem(id, cid, user.value_or(""), pw, now, config.clock_skew);
    FUZZ_CHECK("accepted-wrong-credentials", problem.empty(), "login accepted although " + problem + ":" + who());
    FUZZ_CHECK("login-published", g.effects.published.empty() && g.effects.kicks.empty(),
               "a login published or kicked:" + who());

    // The ACL of the live session is that of its identity.
    bool acl_session = broker_names && gate.check_acl(cid.c_str(), &handle1, user_c, access, topic);
    bool expected = false;
    if (!broker_names) {
    } else if (id.kind == SessionKind::account) {
      const Account* a = gate.registry().account(id.account);
      expected = a && account_allows(*a, cid.c_str(), user_c, access, topic);
    } else {
      expected = device_session_allows(id, access, topic);
    }
    FUZZ_CHECK("acl-session-mismatch", acl_session == expected,
               "check_acl(" + std::to_string(acl_session) + ") differs from the identity's rules:" + who());

    // A repeated login (reconnect; the PBKDF2 cache) gives the same answer; an altered password does not pass.
    ClientInfo again{cid, user_v, "192.0.2.1", &handle2};
    FUZZ_CHECK("login-not-repeatable", gate.authenticate(again, pw_v), "the same login was refused a second time:" + who());
    std::string altered = *pw + "x";
    FUZZ_CHECK("altered-password-accepted", !gate.authenticate(again, std::string_view(altered)),
               "the password with an 'x' appended was accepted:" + who());
    // The refused altered login leaves the previous session (handle2) in place.
    const Identity* s2 = gate.session(cid);
    FUZZ_CHECK("relogin-session", s2 && s2->kind == id.kind && s2->prefix == id.prefix && s2->account == id.account,
               "the repeated login changed the session:" + who());

    // Gone: the names alone must give the rights the session had (wills, retained-source checks).
    gate.on_disconnect(cid, &handle1);  // an old connection's disconnect leaves the new session alone
    FUZZ_CHECK("takeover-disconnect", gate.session(cid) != nullptr,
               "the disconnect of a replaced connection removed the new session:" + who());
    gate.on_disconnect(cid, &handle2);
    FUZZ_CHECK("disconnect-session", gate.session(cid) == nullptr, "session still there after disconnect:" + who());
    bool acl_names = broker_names && gate.check_acl(cid.c_str(), &handle2, user_c, access, topic);  // a will
    FUZZ_CHECK("acl-will-differs", acl_names == acl_session,
               "ACL by names after disconnect (" + std::to_string(acl_names) + ") differs from the session's:" + who());
  }

  // Nothing secret in the log: neither a registry secret (unless the input itself carries it where a log line
  // may quote it: client id, username, topic) nor the password.
  for (const auto& line : g.log.lines) {
    for (const auto& secret : fuzz::fixture_secrets()) {
      if (!fuzz::contains(line, secret)) continue;
      bool quoted = fuzz::contains(cid, secret) || (user && fuzz::contains(*user, secret)) || fuzz::contains(topic, secret);
      FUZZ_CHECK("secret-logged", quoted, "a registry secret was logged: " + fuzz::printable(line) + "; " + describe());
    }
    if (pw && secretish(*pw) && !fuzz::contains(cid, *pw) && !(user && fuzz::contains(*user, *pw)) &&
        !fuzz::contains(topic, *pw))
      FUZZ_CHECK("password-logged", !fuzz::contains(line, *pw),
                 "the password was logged: " + fuzz::printable(line) + "; " + describe());
  }
  return 0;
}
