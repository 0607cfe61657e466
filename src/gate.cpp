#include "iotgate/gate.h"

#include <openssl/evp.h>

#include <algorithm>
#include <charconv>
#include <set>
#include <utility>
#include <vector>

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "iotgate/crypto.h"
#include "iotgate/ids.h"
#include "iotgate/json.h"
#include "iotgate/lierda.h"
#include "iotgate/topic.h"

namespace iotgate {
namespace {


std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  return out;
}

std::string sha256(std::string_view a, std::string_view b) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  EVP_DigestUpdate(ctx, a.data(), a.size());
  EVP_DigestUpdate(ctx, "\0", 1);
  EVP_DigestUpdate(ctx, b.data(), b.size());
  EVP_DigestFinal_ex(ctx, md, &len);
  EVP_MD_CTX_free(ctx);
  return std::string(reinterpret_cast<char*>(md), len);
}


// An integer field that devices send either as a number or as a numeric string.
std::optional<int64_t> lenient_int(const rapidjson::Value& obj, const char* name) {
  auto it = obj.FindMember(name);
  if (it == obj.MemberEnd()) return std::nullopt;
  if (it->value.IsInt64()) return it->value.GetInt64();
  int64_t n = 0;
  if (it->value.IsString() && parse_decimal(std::string_view(it->value.GetString(), it->value.GetStringLength()), n))
    return n;
  return std::nullopt;
}

std::optional<std::string_view> string_field(const rapidjson::Value& obj, const char* name) {
  auto it = obj.FindMember(name);
  if (it == obj.MemberEnd() || !it->value.IsString()) return std::nullopt;
  return std::string_view(it->value.GetString(), it->value.GetStringLength());
}

// The MessageId / ID of a request as JSON text, echoed in the same JSON type it came in ("null" when absent or
// neither a number nor a string).
std::string echo_id(const rapidjson::Value& obj, const char* name) {
  auto it = obj.FindMember(name);
  if (it == obj.MemberEnd() || !(it->value.IsNumber() || it->value.IsString())) return "null";
  return json_text(it->value);
}


// The client ids a login by name may take: NAME, or NAME:ANYTHING (':' is in no account or device name, so no
// name's ids overlap another's).
bool client_id_bound_to(std::string_view client_id, std::string_view name) {
  return client_id.substr(0, name.size()) == name && (client_id.size() == name.size() || client_id[name.size()] == ':');
}

bool has_device(SessionKind k) {
  return k == SessionKind::lierda_v2 || k == SessionKind::krt_device || k == SessionKind::emu_gateway;
}

}  // namespace

Gate::Gate(Config config, Log& log, Effects& effects, Clock clock)
    : config_(std::move(config)), log_(log), effects_(effects), clock_(std::move(clock)),
      ota_(config_, log_, effects_, clock_) {}

const Identity* Gate::session(const std::string& client_id) const {
  const Session* s = sessions_.find(client_id);
  return s ? &s->identity : nullptr;
}

void Gate::refuse_log(const ClientInfo& client, const Refusal& r) {
  std::string line = "iotgate: login refused: client '" + std::string(client.client_id) + "'";
  if (client.username) line += " user '" + std::string(*client.username) + "'";
  if (!client.address.empty()) line += " from " + std::string(client.address);
  line += ": " + r.reason;
  log_.limited(LogLevel::notice, r.reason_key, line);
}

// --- logins ------------------------------------------------------------------------------------------------

// `password` null: resolve the identity from the names alone (ACL checks of wills and retained messages of
// clients that are gone); otherwise every secret must match.
Gate::Resolution Gate::resolve(const ClientInfo& client, const std::optional<std::string_view>* password) {
  std::string_view cid = client.client_id;
  if (!client.username) return {std::nullopt, {"no-username", "no username"}};
  std::string_view user = *client.username;
  if (user.substr(0, 5) == "AUTH-") return resolve_lierda_auth(cid, user, password);
  if (cid.substr(0, 3) == "V2_") return resolve_lierda_v2(cid, user, password);
  if (auto krt = resolve_krt(cid, user, password)) return *krt;

  std::string name(user);
  const Refusal unbound{"client-id-unbound", "client id is not '" + name + "' or '" + name + ":...'"};
  if (const Account* a = registry_.account(name)) {
    if (config_.bind_account_client_ids && !client_id_bound_to(cid, name)) return {std::nullopt, unbound};
    if (password) {
      if (!*password || !a->password_hash) return {std::nullopt, {"wrong-password", "wrong password"}};
      if (!verify_hash("account:" + name, *a->password_hash, **password))
        return {std::nullopt, {"wrong-password", "wrong password"}};
    }
    Identity id;
    id.kind = SessionKind::account;
    id.account = name;
    return {id, {}};
  }
  if (const Device* d = registry_.emu_device_by_uid(name)) {
    const Product* p = registry_.product(d->product);
    if (!p || p->protocol != Protocol::emu) return {std::nullopt, {"unknown-login", "unknown user"}};
    if (!p->enabled) return {std::nullopt, {"product-disabled", "product " + p->id + " is disabled"}};
    if (!d->enabled) return {std::nullopt, {"device-disabled", "device is disabled"}};
    if (!client_id_bound_to(cid, name)) return {std::nullopt, unbound};
    if (password) {
      if (!*password || !d->secret_hash) return {std::nullopt, {"wrong-secret", "wrong secret"}};
      if (!verify_hash("emu:" + name, *d->secret_hash, **password))
        return {std::nullopt, {"wrong-secret", "wrong secret"}};
    }
    Identity id;
    id.kind = SessionKind::emu_gateway;
    id.product = p->id;
    id.device = d->id;
    id.prefix = emu_prefix(p->emu_namespace, p->id, d->id);
    return {id, {}};
  }
  return {std::nullopt, {"unknown-login", "unknown user"}};
}

Gate::Resolution Gate::resolve_lierda_auth(std::string_view cid, std::string_view user,
                                           const std::optional<std::string_view>* password) {
  // username AUTH-${OpenID}-${ProductID}, client id ${ProductID}-${NodeEui}
  if (user.size() != 5 + 8 + 1 + 8 || user[13] != '-' || !is_lierda_id(user.substr(5, 8)) ||
      !is_lierda_id(user.substr(14, 8)))
    return {std::nullopt, {"malformed-username", "malformed AUTH username"}};
  std::string openid(user.substr(5, 8)), pid(user.substr(14, 8));
  if (cid.size() < 9 || cid.substr(0, 8) != pid || cid[8] != '-')
    return {std::nullopt, {"client-id-mismatch", "client id is not ${ProductID}-${NodeEui} of the username"}};
  std::string eui(cid.substr(9));
  if (!is_node_eui(eui)) return {std::nullopt, {"invalid-node-eui", "invalid NodeEui (4-32 letters and digits)"}};
  const Product* p = registry_.product(pid);
  if (!p || p->protocol != Protocol::lierda) return {std::nullopt, {"unknown-product", "unknown product " + pid}};
  if (p->openid != openid) return {std::nullopt, {"openid-mismatch", "OpenID does not own product " + pid}};
  if (!p->enabled) return {std::nullopt, {"product-disabled", "product " + pid + " is disabled"}};
  if (password && (!*password || !constant_time_equal(upper(**password), p->product_key)))
    return {std::nullopt, {"wrong-product-key", "wrong ProductKey"}};
  if (const Device* d = registry_.device(pid, eui); d && !d->enabled)
    return {std::nullopt, {"device-disabled", "device " + eui + " is disabled"}};
  Identity id;
  id.kind = SessionKind::lierda_auth;
  id.product = pid;
  id.device = eui;
  id.openid = openid;
  id.prefix = lierda_prefix(openid, pid, eui);
  return {id, {}};
}

Gate::Resolution Gate::resolve_lierda_v2(std::string_view cid, std::string_view user,
                                         const std::optional<std::string_view>* password) {
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
  const Product* p = registry_.product(pid);
  if (!p || p->protocol != Protocol::lierda) return {std::nullopt, {"unknown-product", "unknown product " + pid}};
  std::string expected_user = p->openid + "-" + pid + "-" + eui;
  if (user != expected_user)
    return {std::nullopt, {"username-mismatch", "username is not ${OpenID}-${ProductID}-${NodeEui} of the client id"}};
  if (!p->enabled) return {std::nullopt, {"product-disabled", "product " + pid + " is disabled"}};
  Device* d = registry_.device_mut(pid, eui);
  if (!d) return {std::nullopt, {"unknown-device", "unknown device " + eui}};
  if (!d->enabled) return {std::nullopt, {"device-disabled", "device " + eui + " is disabled"}};
  if (password) {
    bool type1 = type_text == "1";
    if (type1) {
      int64_t now = clock_();
      if (ts <= d->last_offline)
        return {std::nullopt,
                {"stale-timestamp", "type 1 timestamp " + std::to_string(ts) +
                                        " is not after the device's last offline time " +
                                        std::to_string(d->last_offline) + " (replayed password?)"}};
      if (ts > now + config_.clock_skew)
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

std::optional<Gate::Resolution> Gate::resolve_krt(std::string_view cid, std::string_view user,
                                                  const std::optional<std::string_view>* password) {
  // client id = ProductID (as the seed says) or ${ProductID}.${DeviceID}; username = DeviceID
  std::string pid(cid);
  const Product* p = registry_.product(pid);
  if (!p || p->protocol != Protocol::krt) {
    size_t dot = cid.find('.');
    if (dot == std::string_view::npos) return std::nullopt;
    pid = std::string(cid.substr(0, dot));
    p = registry_.product(pid);
    if (!p || p->protocol != Protocol::krt) return std::nullopt;
    if (cid.substr(dot + 1) != user)
      return Resolution{std::nullopt, {"client-id-mismatch", "client id names another device than the username"}};
  }
  std::string did(user);
  if (!is_plain_id(did)) return Resolution{std::nullopt, {"invalid-device-id", "invalid DeviceID"}};
  if (!p->enabled) return Resolution{std::nullopt, {"product-disabled", "product " + pid + " is disabled"}};
  const Device* d = registry_.device(pid, did);
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
    if (p->limit > 0 && static_cast<int64_t>(registry_.auto_created(pid)) >= p->limit)
      return Resolution{std::nullopt, {"auto-create-limit", "auto-creation limit of product " + pid + " reached"}};
  }
  id.kind = SessionKind::krt_register;
  return Resolution{id, {}};
}

bool Gate::verify_hash(const std::string& cache_key, const Pbkdf2Hash& hash, std::string_view password) {
  std::string material(hash.hash.begin(), hash.hash.end());
  std::string digest = sha256(material, password);
  auto it = verified_.find(cache_key);
  if (it != verified_.end() && constant_time_equal(it->second, digest)) return true;
  if (!verify_pbkdf2(hash, password)) return false;
  verified_[cache_key] = std::move(digest);
  return true;
}

bool Gate::authenticate(const ClientInfo& client, std::optional<std::string_view> password) {
  if (!loaded_) {
    refuse_log(client, {"not-loaded", "device data not loaded from Redis yet"});
    return false;
  }
  int64_t now = clock_();
  std::string address(client.address);
  const bool counted = !address.empty() && config_.auth_fail_limit > 0;
  std::string username(client.username ? *client.username : client.client_id);
  if (counted) {
    if (auto ban = ban_of(address, username, now)) {
      refuse_log(client, {"address-banned", "address banned until " + std::to_string(ban->first) +
                                                (ban->second == Ban::username ? " for this username" : "") +
                                                " after repeated failed logins"});
      return false;
    }
  }
  std::optional<std::string_view> pw = password;
  Resolution r = resolve(client, &pw);
  if (!r.identity) {
    refuse_log(client, r.refusal);
    Ban ban = counted ? count_failure(address, username, now) : Ban::none;
    if (ban == Ban::username)
      log_.warning("iotgate: banning address " + address + " for username '" + username + "' for " +
                   std::to_string(config_.auth_ban_seconds) + " s after " + std::to_string(config_.auth_fail_limit) +
                   " failed logins within " + std::to_string(config_.auth_fail_window) + " s");
    else if (ban == Ban::address)
      log_.warning("iotgate: banning address " + address + " for " + std::to_string(config_.auth_ban_seconds) +
                   " s after " + std::to_string(config_.auth_fail_limit) + " failed logins under " +
                   std::to_string(config_.auth_spray_usernames) + " or more usernames within " +
                   std::to_string(config_.auth_fail_window) + " s");
    return false;
  }
  after_login(client, *r.identity, r.device);
  return true;
}

std::optional<std::pair<int64_t, Gate::Ban>> Gate::ban_of(const std::string& address, const std::string& username,
                                                         int64_t now) const {
  auto f = failures_.find(address);
  if (f == failures_.end()) return std::nullopt;
  if (f->second.address.banned_until > now) return std::pair{f->second.address.banned_until, Ban::address};
  auto u = f->second.by_username.find(username);
  if (u != f->second.by_username.end() && u->second.banned_until > now)
    return std::pair{u->second.banned_until, Ban::username};
  return std::nullopt;
}

Gate::Ban Gate::count_failure(const std::string& address, const std::string& username, int64_t now) {
  if (failures_.size() > 100000) forget_quiet_addresses(now);  // bound the table under a spray of addresses
  AddressFailures& f = failures_[address];
  if (now - f.address.window_start >= config_.auth_fail_window) {
    f.address.window_start = now;
    f.address.count = 0;
    f.usernames.clear();
  }
  ++f.address.count;
  if (static_cast<int>(f.usernames.size()) < config_.auth_spray_usernames &&
      std::find(f.usernames.begin(), f.usernames.end(), username) == f.usernames.end())
    f.usernames.push_back(username);
  if (f.address.count >= config_.auth_fail_limit &&
      static_cast<int>(f.usernames.size()) >= config_.auth_spray_usernames) {
    f.address.banned_until = now + config_.auth_ban_seconds;
    f.address.count = 0;
    f.usernames.clear();
    return Ban::address;
  }
  FailureCount& u = f.by_username[username];
  if (now - u.window_start >= config_.auth_fail_window) {
    u.window_start = now;
    u.count = 0;
  }
  if (++u.count < config_.auth_fail_limit) return Ban::none;
  u.banned_until = now + config_.auth_ban_seconds;
  u.count = 0;
  return Ban::username;
}

void Gate::after_login(const ClientInfo& client, const Identity& id, Device* device) {
  std::string cid(client.client_id);
  // mosquitto logs every accepted connection itself; this adds who it is, for debugging.
  if (log_.enabled(LogLevel::debug))
    log_.debug("iotgate: login accepted: client '" + cid + "' as " + to_string(id.kind) +
               (id.kind == SessionKind::account ? " " + id.account : " " + id.product + "/" + id.device));
  Device* d = device ? device : has_device(id.kind) ? registry_.device_mut(id.product, id.device) : nullptr;
  // First: a rekey below belongs to this connection. The broker's id buffer, not `cid`, confirms later lookups.
  const Account* account = id.kind == SessionKind::account ? registry_.account(id.account) : nullptr;
  // A takeover: the connection that held the id keeps its own rights for its will (see departed_).
  if (const Session* held = sessions_.find(client.client_id); held && held->handle != client.handle)
    departed_.insert_or_assign(held->handle, held->identity);
  departed_.erase(client.handle);  // the broker may give a new connection a departed one's address
  sessions_.put(client.client_id, Session{id, client.handle, wall_ms(), d, account, entries_epoch_, {}});
  if (!d) return;
  int64_t now = clock_();
  d->last_online = std::max(d->last_online, now);
  Fields f{{"last_online", std::to_string(d->last_online)}};  // the maximum: Redis takes it as it comes
  if (id.kind == SessionKind::krt_device && !d->activated) {
    d->activated = true;
    f["activated"] = "1";
  }
  touch(id.product, id.device, std::move(f));
  if (id.kind == SessionKind::lierda_v2) {
    const Product* p = registry_.product(id.product);
    // The V2 session is where an encrypted device learns its key (the AUTH session proves only the ProductKey).
    if (p && p->encrypted) {
      if (d->session_key.empty() || d->session_key_expires <= now) start_rekey(cid, id, *p);
      else replies_due_.push_back(session_key_notice(cid, id));
    }
  }
}

void Gate::touch(const std::string& product, const std::string& device, Fields fields) {
  StoreJob job;
  job.type = StoreJob::Type::touch_device;
  job.durable = true;
  job.product = product;
  job.device = device;
  job.fields = std::move(fields);
  effects_.submit(std::move(job));
}

// --- ACL ---------------------------------------------------------------------------------------------------

bool Gate::check_acl(const char* client_id, const void* handle, const char* username, Access access,
                     TopicText topic) {
  return allows(sessions_.find(handle, client_id), handle, client_id, username, access, topic);
}

bool Gate::allows(const Sessions::Found& found, const void* handle, const char* client_id, const char* username,
                  Access access, TopicText topic) {
  if (!found.session) return unlisted_allows(handle, client_id, username, access, topic);
  const SessionKind kind = found.summary ? found.summary->kind : found.session->identity.kind;
  if (kind != SessionKind::account) {
    SessionView v = view_of(found);
    return device_allows(v.kind, v.prefix, client_id, access, topic);
  }
  // Most reads of an account are answered by its summary, without reading the session (see SessionSummary).
  if (access == Access::read && found.summary && summary_reads(*found.summary, topic)) return true;
  refresh_entries(*found.session);
  return account_session_allows(found.session->account, client_id, username, access, topic);
}

bool Gate::unlisted_allows(const void* handle, const char* client_id, const char* username, Access access,
                           TopicText topic) {
  auto departed = handle ? departed_.find(handle) : departed_.end();
  if (departed == departed_.end()) return names_allow(client_id, username, access, topic);
  // The will of a connection that just left: its own rights, unless they were revoked (a kicked device's will).
  const Identity& id = departed->second;
  if (auto why = session_invalid_reason(id)) {
    if (access != Access::read) log_acl_denial(client_id, access, topic.view(), why->c_str());
    return false;
  }
  return identity_allows(id, client_id, username, access, topic);
}

// A delayed will, or the retained-source check of a client that is gone: judge by the names. Kept apart
// from check_acl, whose every-message path then carries no Identity of its own.
bool Gate::names_allow(const char* client_id, const char* username, Access access, TopicText topic) {
  ClientInfo c{client_id, username ? std::optional<std::string_view>(username) : std::nullopt, {}, nullptr};
  Resolution r = resolve(c, nullptr);
  if (r.identity) return identity_allows(*r.identity, client_id, username, access, topic);
  if (access != Access::read) log_acl_denial(client_id, access, topic.view(), "no session");
  return false;
}

bool Gate::identity_allows(const Identity& id, const char* client_id, const char* username, Access access,
                           TopicText topic) {
  if (id.kind != SessionKind::account) return device_allows(id.kind, id.prefix, client_id, access, topic);
  return account_session_allows(registry_.account(id.account), client_id, username, access, topic);
}

bool Gate::account_session_allows(const Account* account, const char* client_id, const char* username,
                                  Access access, TopicText topic) {
  bool allowed = account && account_allows(*account, client_id, username, access, topic);
  if (!allowed && access != Access::read)
    log_acl_denial(client_id, access, topic.view(), to_string(SessionKind::account));
  return allowed;
}

// Device sessions need neither the client id nor the username (reading them would cost cache misses on every
// message) unless the answer is a refusal to log.
bool Gate::device_allows(SessionKind kind, std::string_view prefix, const char* client_id, Access access,
                         TopicText topic, std::string_view* suffix) {
  bool allowed = device_session_allows(kind, prefix, access, topic, suffix);
  if (!allowed && access != Access::read) log_acl_denial(client_id, access, topic.view(), to_string(kind));
  return allowed;
}

Gate::SessionSummary::SessionSummary(const Session& s) : kind(s.identity.kind) {
  std::string_view text = s.identity.prefix;
  if (kind == SessionKind::account) {
    prefix_size = kLongPrefix;
    if (!s.account) return;
    if (s.account->superuser) {
      prefix_size = kAnyTopic;
      return;
    }
    std::optional<std::string_view> stem = read_subtree_stem(*s.account);
    if (!stem) return;
    text = *stem;
  }
  if (text.size() > sizeof(prefix)) {
    prefix_size = kLongPrefix;
    return;
  }
  prefix_size = static_cast<uint8_t>(text.size());
  text.copy(prefix, text.size());
}

Gate::SessionView Gate::view_of(const Sessions::Found& found) {
  const SessionSummary* s = found.summary;
  if (s && s->kind != SessionKind::account && s->prefix_size != SessionSummary::kLongPrefix)
    return {s->kind, std::string_view(s->prefix, s->prefix_size)};
  return {found.session->identity.kind, found.session->identity.prefix};
}

bool Gate::summary_reads(const SessionSummary& s, TopicText topic) {
  if (s.prefix_size == SessionSummary::kAnyTopic) return true;
  return s.prefix_size != SessionSummary::kLongPrefix && in_subtree(std::string_view(s.prefix, s.prefix_size), topic);
}

// Account sessions' summaries copy a rule of their account (see SessionSummary): after any change of the accounts,
// each is made again from the account as it is now.
void Gate::refresh_account_summaries() {
  sessions_.update_indexed([this](Session& s) {
    if (s.identity.kind != SessionKind::account) return false;
    refresh_entries(s);
    return true;
  });
}

void Gate::log_acl_denial(std::string_view client_id, Access access, std::string_view topic, const char* who) {
  log_.limited(LogLevel::notice, "acl-deny",
               std::string("iotgate: denied ") + (access == Access::write ? "publish to '" : "subscribe to '") +
                   std::string(topic) + "' for client '" + std::string(client_id) + "' (" + who + ")");
}

// --- messages ----------------------------------------------------------------------------------------------

// In mosquitto 2.0.11 the MESSAGE event of a PUBLISH directly follows its WRITE check, with the same topic and
// payload: answering the platform's topics here instead spares every message a second trip through the plugin
// interface and a second session lookup. The other WRITE checks are not a client's PUBLISH and must not be
// answered: a will (checked after its sender's DISCONNECT, or with the replaced connection of a takeover) and the
// retained-source check (a stand-in client). None of them comes from an indexed connection, so only a session found
// through the index (`found.summary`) is answered.
Verdict Gate::on_publish(const char* client_id, const void* handle, const char* username, TopicText topic,
                         std::string_view payload, bool retain) {
  Sessions::Found found = sessions_.find(handle, client_id);
  if (found.summary && found.summary->kind != SessionKind::account) {
    const SessionView view = view_of(found);
    std::string_view suffix;  // the ACL finds it, the handler uses it: the topic is read once
    if (!device_allows(view.kind, view.prefix, client_id, Access::write, topic, &suffix)) return Verdict::drop;
    if (retain) [[unlikely]] note_retained(found, topic.view(), payload.empty());
    return answer_platform(found, view.kind, client_id, handle, topic, suffix, payload);
  }
  // Accounts, and the write checks that are no client's PUBLISH (see above): judged, never answered.
  if (!allows(found, handle, client_id, username, Access::write, topic)) return Verdict::drop;
  if (retain) [[unlikely]] note_retained(found, topic.view(), payload.empty());
  return Verdict::pass;
}

void Gate::note_retained(const Sessions::Found& found, std::string_view topic, bool cleared) {
  std::optional<std::pair<std::string, std::string>> device;
  if (found.session && has_device(found.session->identity.kind))
    device.emplace(found.session->identity.product, found.session->identity.device);
  else
    device = device_of_topic(topic);
  if (!device) return;
  StoreJob job;
  job.type = StoreJob::Type::retained;
  job.durable = true;
  job.product = std::move(device->first);
  job.device = std::move(device->second);
  job.fields = {{std::string(topic), cleared ? "0" : "1"}};
  effects_.submit(std::move(job));
}

std::optional<std::pair<std::string, std::string>> Gate::device_of_topic(std::string_view topic) const {
  // The levels of the topic that have more below them (a device's topics lie below its prefix).
  std::vector<std::string_view> levels;
  for (size_t start = 0; levels.size() < 5;) {
    size_t slash = topic.find('/', start);
    if (slash == std::string_view::npos) break;
    levels.push_back(topic.substr(start, slash - start));
    start = slash + 1;
  }
  auto known = [&](std::string_view product, std::string_view device,
                   Protocol protocol) -> std::optional<std::pair<std::string, std::string>> {
    const Product* p = registry_.product(std::string(product));
    if (!p || p->protocol != protocol || !registry_.device(p->id, std::string(device))) return std::nullopt;
    return std::pair{p->id, std::string(device)};
  };
  const size_t n = levels.size();
  if (n >= 4 && levels[0] == "v1") {  // v1/{namespace}/{key}/{device}/
    auto d = known(levels[2], levels[3], Protocol::emu);
    return d && registry_.product(d->first)->emu_namespace == levels[1] ? d : std::nullopt;
  }
  if (n < 4 || !levels[0].empty() || levels[1] != "sys") return std::nullopt;
  if (n == 5 && levels[4] == "thing")  // /sys/{ProductID}/{DeviceID}/thing/
    if (auto d = known(levels[2], levels[3], Protocol::krt)) return d;
  if (n == 5)  // /sys/{OpenID}/{ProductID}/{NodeEui}/
    if (auto d = known(levels[3], levels[4], Protocol::lierda); d && registry_.product(d->first)->openid == levels[2])
      return d;
  return std::nullopt;
}

Verdict Gate::answer_platform(const Sessions::Found& found, SessionKind kind, const char* client_id_text,
                              const void* handle, TopicText topic, std::string_view suffix, std::string_view payload) {
  // Which of the topics the platform answers is this? The ACL allowed the publish, so the kind narrows it down:
  // an auth session may publish only its request, a registration only register/post, a gateway only OTA results.
  using Handler = PlatformHandler;
  Handler handler = Handler::none;
  switch (kind) {
    case SessionKind::lierda_auth: handler = Handler::lierda_auth; break;
    case SessionKind::krt_register: handler = Handler::krt_register; break;
    case SessionKind::lierda_v2:
      if (suffix == "firmware_report" || suffix == "ota_notify_ack") handler = Handler::lierda_ota;
      else if (config_.lierda_acks) handler = Handler::lierda_report;
      break;
    case SessionKind::krt_device:
      if (suffix == "ota/post") handler = Handler::krt_ota;
      break;
    case SessionKind::emu_gateway: handler = Handler::emu_result; break;
    case SessionKind::account: break;
  }
  if (handler == Handler::none) return Verdict::pass;
  // Answering a report leaves the session table alone: no copy of the identity on that per-message path. Oversized
  // or opaque (not a frame): application data, delivered, not acked, decided before anything is built.
  if (handler == Handler::lierda_report) {
    if (payload.size() <= config_.max_payload && lierda_may_answer(suffix, payload))
      answer_lierda_report(client_id_text, *found.session, suffix, payload);
    return Verdict::pass;
  }
  return run_handler(handler, *found.session, client_id_text, handle, topic, suffix, payload);
}

Verdict Gate::run_handler(PlatformHandler handler, Session& session_found, const char* client_id_text,
                          const void* handle, TopicText topic, std::string_view suffix, std::string_view payload) {
  using Handler = PlatformHandler;
  Session* session = &session_found;
  std::string_view client_id(client_id_text);
  if (payload.size() > config_.max_payload) {
    log_.limited(LogLevel::notice, "oversized",
                 "iotgate: dropped " + std::to_string(payload.size()) + "-byte message on '" + std::string(topic.view()) +
                     "' from '" + std::string(client_id) + "': larger than max_payload " +
                     std::to_string(config_.max_payload));
    return Verdict::drop;
  }
  std::string cid(client_id);
  // The other handlers may change sessions_: they get copies, and the OTA report memory is written back after.
  Identity copy = session->identity;
  int64_t started_ms = session->started_ms;
  std::string last_report = session->last_report;
  bool accepted = true;
  switch (handler) {
    case Handler::lierda_auth: accepted = handle_auth_request(cid, copy, payload); break;
    case Handler::krt_register: accepted = handle_krt_register(cid, copy, payload); break;
    case Handler::lierda_ota: {
      const Product* p = registry_.product(copy.product);
      const Device* device = device_of(*session);  // no handler has run yet: the session is still there
      if (!p || !device) return Verdict::drop;
      accepted = ota_.on_lierda(cid, copy, *p, *device, suffix, payload, started_ms, &last_report);
      break;
    }
    case Handler::krt_ota: accepted = ota_.on_krt(cid, copy, payload, started_ms, &last_report); break;
    case Handler::emu_result: {
      std::string_view name = suffix.substr(4, suffix.size() - 4 - 7);  // ota/<name>/result
      accepted = ota_.on_emu(cid, copy, name, payload);
      break;
    }
    case Handler::none:
    case Handler::lierda_report: break;
  }
  if (Session* s = sessions_.find(handle, client_id_text).session) s->last_report = std::move(last_report);
  return accepted ? Verdict::pass : Verdict::drop;
}

// Acks a Lierda report the way the platform does; the report itself still goes on to its subscribers.
void Gate::answer_lierda_report(const char* client_id_text, Session& session, std::string_view suffix,
                                std::string_view payload) {
  auto ack = lierda_ack_for(suffix, payload, wall_ms, config_.timezone, clock_);
  if (!ack) return;
  std::string_view client_id(client_id_text);
  const Identity& id = session.identity;
  if (!ack->problem.empty())
    log_.limited(LogLevel::notice, "bad-report",
                 "iotgate: " + std::string(suffix) + " from '" + std::string(client_id) +
                     "' answered with Code 4001: " + ack->problem);
  std::string body = ack->payload;
  if (ack->encryptable) {
    const Product* p = registry_.product(id.product);
    const Device* device = p && p->encrypted ? device_of(session) : nullptr;
    if (device && !device->session_key.empty())
      body = json_quoted(to_hex_upper(aes128_ecb_encrypt(*from_hex(device->session_key), body)));
  }
  effects_.publish_to_client(std::string(client_id), id.prefix + ack->topic_suffix,
                             "{\"MessageId\":" + ack->message_id + ",\"HeaderCtrl\":" + std::to_string(ack->header) +
                                 ",\"Payload\":" + body + ",\"Version\":\"2.0\"}",
                             1);
}

void Gate::ask_firmware(const std::string& product, const std::string& device) {
  for (const auto& [cid, s] : sessions_) {
    if (s.identity.kind != SessionKind::lierda_v2 || s.identity.product != product || s.identity.device != device)
      continue;
    effects_.publish_to_client(cid, s.identity.prefix + "ask_firmware",
                               "{\"MessageId\":" + std::to_string(clock_()) +
                                   ",\"HeaderCtrl\":13,\"Payload\":{},\"Version\":\"2.0\"}",
                               1);
    log_.info("iotgate: asked " + product + "/" + device + " for its firmware version (HeaderCtrl 13)");
  }
}

void Gate::on_command(const Command& command) {
  auto get = [&](const char* f) {
    auto it = command.fields.find(f);
    return it == command.fields.end() ? std::string() : it->second;
  };
  std::string kind = get("kind");
  if (kind == "ask_firmware") {
    ask_firmware(get("product"), get("device"));
  } else if (kind == "push") {
    std::vector<std::string> devices;
    std::string list = get("devices");
    for (size_t start = 0; start < list.size();) {
      size_t comma = list.find(',', start);
      if (comma == std::string::npos) comma = list.size();
      if (comma > start) devices.push_back(list.substr(start, comma - start));
      start = comma + 1;
    }
    std::string task_id = get("task");
    auto marked = ota_.push(task_id, devices);
    const OtaTask* t = ota_.task(task_id);
    if (!t || marked.empty()) return;
    // Ask the online ones to report now, so the push reaches them without waiting for their next report.
    std::set<std::string> asked;
    for (const auto& [cid, s] : sessions_) {
      if (s.identity.kind != SessionKind::lierda_v2 || s.identity.product != t->product) continue;
      if (ota_.is_pushed(task_id, s.identity.device) && asked.insert(s.identity.device).second)
        ask_firmware(t->product, s.identity.device);
    }
  } else if (kind == "clear_retained") {
    // A deleted device's retained messages (docs/security.md): every broker clears what it holds.
    rapidjson::Document topics;
    std::string text = get("topics");
    topics.Parse<kDeviceJson>(text.data(), text.size());
    if (topics.HasParseError() || !topics.IsArray()) {
      log_.warning("iotgate: clear_retained command without a JSON array of topics ignored");
      return;
    }
    size_t cleared = 0;
    for (const auto& t : topics.GetArray()) {
      if (!t.IsString() || !is_valid_topic(std::string_view(t.GetString(), t.GetStringLength()))) continue;
      effects_.clear_retained(std::string(t.GetString(), t.GetStringLength()));
      ++cleared;
    }
    log_.info("iotgate: cleared " + std::to_string(cleared) + " retained messages of a deleted device");
  } else if (kind == "publish") {
    std::string topic = get("topic");
    if (!is_valid_topic(topic)) {
      log_.warning("iotgate: publish command with an invalid topic ignored");
      return;
    }
    effects_.publish(topic, get("payload"), 1);
    log_.info("iotgate: published a command on '" + topic + "'");
  } else {
    log_.warning("iotgate: unknown command '" + kind + "' ignored");
  }
}

void Gate::tick() {
  departed_.clear();
  for (const Pending& p : std::exchange(replies_due_, {})) answer(p, true, "", registry_.device(p.product, p.device));
  int64_t now = clock_();
  if (now == last_sweep_) return;
  last_sweep_ = now;
  ota_.sweep_timeouts();
  if (now % 60 == 0) forget_quiet_addresses(now);
}

void Gate::forget_quiet_addresses(int64_t now) {
  auto quiet = [&](const FailureCount& c) {
    return c.banned_until <= now && now - c.window_start >= config_.auth_fail_window;
  };
  for (auto it = failures_.begin(); it != failures_.end();) {
    std::erase_if(it->second.by_username, [&](const auto& entry) { return quiet(entry.second); });
    it = quiet(it->second.address) && it->second.by_username.empty() ? failures_.erase(it) : std::next(it);
  }
}

bool Gate::handle_auth_request(const std::string& client_id, const Identity& id, std::string_view payload) {
  rapidjson::Document doc;
  doc.Parse<kDeviceJson>(payload.data(), payload.size());
  auto drop = [&](const std::string& why) {
    log_.limited(LogLevel::notice, "bad-auth-request",
                 "iotgate: auth request from '" + client_id + "' refused: " + why);
    return false;
  };
  if (doc.HasParseError() || !doc.IsObject()) return drop("not a JSON object");
  if (lenient_int(doc, "HeaderCtrl") != 1) return drop("HeaderCtrl is not 1");
  Pending p;
  p.kind = PendingKind::lierda_auth;
  p.client_id = client_id;
  p.handle = sessions_.find(client_id)->handle;
  p.product = id.product;
  p.device = id.device;
  p.topic = id.prefix + "downlink";
  p.message_id_json = echo_id(doc, "MessageId");
  p.created = clock_();
  auto refuse = [&](int code, const std::string& why) {
    log_.limited(LogLevel::notice, "auth-request-refused",
                 "iotgate: auth request from '" + client_id + "' answered with Code " + std::to_string(code) + ": " + why);
    reply_auth(p, code, nullptr);
    return true;
  };
  if (string_field(doc, "Version") != std::string_view("2.0")) return refuse(6, "Version is not \"2.0\"");
  auto body = doc.FindMember("Payload");
  if (body == doc.MemberEnd() || !body->value.IsObject()) return refuse(4, "Payload is not an object");
  auto openid = string_field(body->value, "OpenID");
  auto pid = string_field(body->value, "ProductID");
  auto eui = string_field(body->value, "NodeEui");
  if (!openid || !pid || !eui) return refuse(4, "Payload lacks OpenID, ProductID or NodeEui");
  if (!is_node_eui(*eui)) return refuse(4, "invalid NodeEui");
  if (*pid != id.product || *openid != id.openid || *eui != id.device)
    return refuse(4, "request names another device than the connection");
  const Product* product = registry_.product(id.product);
  if (!product || product->protocol != Protocol::lierda || product->openid != id.openid)
    return refuse(2, "unknown product");
  auto type = lenient_int(body->value, "Type");
  if (type != product->auth_type) return refuse(5, "Type does not match the product's auth type");
  const Device* d = registry_.device(id.product, id.device);
  if (d && !d->enabled) return refuse(4, "device is disabled");
  if (!d && product->auth_type != 0) return refuse(4, "device is not registered");
  if (!d && product->limit > 0 && static_cast<int64_t>(registry_.auto_created(id.product)) >= product->limit)
    return refuse(4, "auto-creation limit of product " + id.product + " reached");
  p.include_secret = product->auth_type != 2;  // a one-device-one-secret device already holds its secret

  // A session key is issued only with a first DeviceSecret, to the connection that becomes the device's owner. A
  // device that has its secret gets or changes its key only as itself, over its V2 session (start_rekey): any
  // holder of the ProductKey can open an AUTH session for any NodeEui (docs/security.md).
  if (d && !d->secret.empty()) {
    replies_due_.push_back(std::move(p));
    return true;
  }

  StoreJob job;
  job.type = StoreJob::Type::lierda_issue;
  job.token = next_token_++;
  job.product = id.product;
  job.device = id.device;
  job.create = product->auth_type == 0;
  job.origin = "auth";
  job.limit = product->limit;
  job.candidate_secret = random_hex(16);
  if (product->encrypted) job.fields = new_session_key(*product);
  pending_[job.token] = std::move(p);
  effects_.submit(std::move(job));
  return true;
}

// Replies that carry a secret or a session key go at QoS 0: a QoS 1 message waiting in a durable session would be
// handed to whichever connection resumes that session with the same client id.
constexpr int kSecretQos = 0;

void Gate::reply_auth(const Pending& p, int code, const Device* device) {
  std::string body = "{\"Code\":" + std::to_string(code);
  // Type 2 devices hold their secret already, and only their V2 session gets their session key: the AUTH session
  // proves nothing but the ProductKey. For types 0 and 1 the ProductKey holder is given the DeviceSecret anyway.
  if (code == 0 && device && p.include_secret) {
    body += ",\"DeviceSecret\":" + json_quoted(device->secret);
    if (!device->session_id.empty())
      body += ",\"SessionID\":" + json_quoted(device->session_id) + ",\"Nonce\":" + std::to_string(device->nonce);
  }
  body += "}";
  std::string msg = "{\"MessageId\":" + p.message_id_json + ",\"HeaderCtrl\":1,\"Payload\":" + body +
                    ",\"Version\":\"2.0\"}";
  effects_.publish_to_client(p.client_id, p.topic, msg, kSecretQos);
  if (code == 0)
    log_.info("iotgate: auth request of '" + p.client_id + "' answered with Code 0" +
              (p.include_secret ? " and its DeviceSecret" : ""));
}

bool Gate::handle_krt_register(const std::string& client_id, const Identity& id, std::string_view payload) {
  rapidjson::Document doc;
  doc.Parse<kDeviceJson>(payload.data(), payload.size());
  if (doc.HasParseError() || !doc.IsObject()) {
    log_.limited(LogLevel::notice, "bad-register-request",
                 "iotgate: register message from '" + client_id + "' refused: not a JSON object");
    return false;
  }
  const Product* product = registry_.product(id.product);
  Device* d = registry_.device_mut(id.product, id.device);
  if (!product) return false;
  if (d && d->activated) {
    log_.limited(LogLevel::notice, "register-after-activation",
                 "iotgate: register message from '" + client_id + "' not answered: device already activated");
    return true;
  }
  auto cmd = lenient_int(doc, "CMD");
  bool confirm = cmd == 21 || string_field(doc, "BACK") == std::string_view("OK");
  if (confirm) {
    if (!d || d->secret.empty()) {
      log_.limited(LogLevel::notice, "bad-register-request",
                   "iotgate: registration confirmation from '" + client_id + "' refused: no secret was issued");
      return false;
    }
    d->activated = true;
    touch(id.product, id.device, {{"activated", "1"}});
    log_.info("iotgate: KRT device " + id.product + "/" + id.device + " activated; closing its registration session");
    effects_.kick(client_id);
    return true;
  }
  if (cmd && *cmd != 20) {
    log_.limited(LogLevel::notice, "bad-register-request",
                 "iotgate: register message from '" + client_id + "' refused: CMD " + std::to_string(*cmd));
    return false;
  }
  Pending p;
  p.kind = PendingKind::krt_register;
  p.client_id = client_id;
  p.handle = sessions_.find(client_id)->handle;
  p.product = id.product;
  p.device = id.device;
  p.topic = id.prefix + std::string(kKrtRegisterSet);
  p.message_id_json = echo_id(doc, "ID");
  p.created = clock_();
  if (d && !d->secret.empty()) {  // a repeated request gets the same secret
    replies_due_.push_back(std::move(p));
    return true;
  }
  StoreJob job;
  job.type = StoreJob::Type::krt_issue;
  job.token = next_token_++;
  job.product = id.product;
  job.device = id.device;
  job.create = !d && product->auto_create;
  job.origin = "auto";
  job.candidate_secret = random_hex(16);
  job.limit = product->limit;
  pending_[job.token] = std::move(p);
  effects_.submit(std::move(job));
  return true;
}

void Gate::reply_krt(const Pending& p, int code, const Device* device) {
  // Both spellings of the reply fields, so devices written to either reading of the seed find their secret.
  std::string msg = "{\"CMD\":20,\"ID\":" + p.message_id_json + ",\"CODE\":" + std::to_string(code);
  if (code == 0 && device) {
    std::string s = json_quoted(device->secret);
    msg += ",\"DEVICE_SECRET\":" + s + ",\"ProductID\":" + json_quoted(device->product) +
           ",\"DeviceID\":" + json_quoted(device->id) + ",\"DeviceSecret\":" + s;
  }
  msg += "}";
  effects_.publish_to_client(p.client_id, p.topic, msg, kSecretQos);
  log_.info("iotgate: register request of '" + p.client_id + "' answered with CODE " + std::to_string(code));
}

// A fresh SessionID and Nonce, the SessionKey derived from them, and its expiry, as device fields.
Fields Gate::new_session_key(const Product& product) {
  std::string session_id = random_hex(4);
  uint32_t nonce = 0;
  for (uint8_t b : random_bytes(4)) nonce = nonce << 8 | b;
  nonce &= 0x7FFFFFFF;  // a Java int on the device side
  return {{"session_id", session_id},
          {"nonce", std::to_string(nonce)},
          {"session_key", *lierda_session_key(product.product_key, session_id, nonce)},
          {"session_key_expires", std::to_string(clock_() + config_.session_key_ttl)}};
}

Gate::Pending Gate::session_key_notice(const std::string& client_id, const Identity& id) {
  Pending p;
  p.kind = PendingKind::session_rekey;
  p.client_id = client_id;
  const Session* asking = sessions_.find(client_id);
  p.handle = asking ? asking->handle : nullptr;
  p.product = id.product;
  p.device = id.device;
  p.topic = id.prefix + "downlink";
  p.created = clock_();
  return p;
}

void Gate::start_rekey(const std::string& client_id, const Identity& id, const Product& product) {
  StoreJob job;
  job.type = StoreJob::Type::lierda_issue;
  job.token = next_token_++;
  job.product = id.product;
  job.device = id.device;
  job.candidate_secret = random_hex(16);  // unused: the device has a secret
  job.fields = new_session_key(product);
  pending_[job.token] = session_key_notice(client_id, id);
  effects_.submit(std::move(job));
}

void Gate::on_result(const StoreResult& result) {
  auto it = pending_.find(result.token);
  if (it == pending_.end()) return;
  Pending p = std::move(it->second);
  pending_.erase(it);
  const Device* d = nullptr;
  if (result.ok && result.device) {
    std::string err;
    if (auto dev = device_from_fields(p.product, p.device, *result.device, &err)) {
      merge_device(std::move(*dev));
      d = registry_.device(p.product, p.device);
    } else {
      log_.warning("iotgate: stored device is malformed: " + err);
    }
  } else if (!result.ok) {
    static const std::set<std::string> known = {"unavailable", "unknown_product", "unknown_device", "disabled", "limit"};
    log_.limited(LogLevel::warning, "store-refused",
                 "iotgate: could not store the credentials for '" + p.client_id +
                     "': " + (known.count(result.error) ? result.error : std::string("store error")));
  }
  answer(p, result.ok, result.error, d);
}

void Gate::answer(const Pending& p, bool ok, const std::string& error, const Device* d) {
  if (!still_asking(p)) {
    log_.notice("iotgate: reply for " + p.product + "/" + p.device + " not sent: client '" + p.client_id +
                "' has left or is now another connection");
    return;
  }
  switch (p.kind) {
    case PendingKind::lierda_auth: {
      int code = ok && d ? 0
                 : error == "unknown_product" ? 2
                 : (error == "unknown_device" || error == "disabled" || error == "limit") ? 4
                                                                                          : 1;
      reply_auth(p, code, d);
      break;
    }
    case PendingKind::krt_register: {
      int code = ok && d ? 0
                 : (error == "limit" || error == "unknown_device" || error == "unknown_product") ? 2
                 : error == "disabled" ? 3
                                       : 1;
      reply_krt(p, code, d);
      break;
    }
    case PendingKind::session_rekey:
      if (d && !d->session_id.empty()) {
        std::string msg = "{\"MessageId\":" + std::to_string(clock_()) +
                          ",\"HeaderCtrl\":3,\"Payload\":{\"SessionID\":" + json_quoted(d->session_id) +
                          ",\"Nonce\":" + std::to_string(d->nonce) + "},\"Version\":\"2.0\"}";
        effects_.publish_to_client(p.client_id, p.topic, msg, kSecretQos);
        log_.info("iotgate: sent a session key (HeaderCtrl 3) to '" + p.client_id + "'");
      }
      break;
  }
}

bool Gate::still_asking(const Pending& p) const {
  const Session* s = sessions_.find(p.client_id);
  return s && s->handle == p.handle && s->identity.product == p.product && s->identity.device == p.device;
}

// --- disconnects -------------------------------------------------------------------------------------------

void Gate::on_disconnect(std::string_view client_id, const void* handle) {
  Session* s = sessions_.find(client_id);
  // A client-id takeover disconnects the old connection after the new one logged in: only its own entry goes.
  if (!s || s->handle != handle) return;
  Device* d = device_of(*s);
  Identity id = std::move(s->identity);
  sessions_.erase(client_id);
  mark_offline(id, d, clock_());
  departed_.insert_or_assign(handle, std::move(id));  // its will is checked next
}

void Gate::on_shutdown() {
  int64_t now = clock_();
  for (const auto& [cid, s] : sessions_)
    mark_offline(s.identity, registry_.device_mut(s.identity.product, s.identity.device), now);
  sessions_.clear();
}

// The session's device and account pointers save a lookup per use, unless a removal or reload made them stale.
void Gate::refresh_entries(Session& s) {
  if (s.entries_epoch == entries_epoch_) return;
  const Identity& id = s.identity;
  s.device = has_device(id.kind) ? registry_.device_mut(id.product, id.device) : nullptr;
  s.account = id.kind == SessionKind::account ? registry_.account(id.account) : nullptr;
  s.entries_epoch = entries_epoch_;
}

Device* Gate::device_of(Session& s) {
  refresh_entries(s);
  return s.device;
}

void Gate::mark_offline(const Identity& id, Device* device, int64_t now) {
  if (!has_device(id.kind)) return;
  // A type-1 password is refused once its timestamp is not after the last offline time: one ahead of the clock
  // (within clock_skew) must not outlive its session.
  now = std::max(now, id.type1_timestamp);
  if (device) now = device->last_offline = std::max(device->last_offline, now);
  touch(id.product, id.device, {{"last_offline", std::to_string(now)}});
}

// --- changes from Redis ------------------------------------------------------------------------------------

void Gate::merge_device(Device incoming) {
  // Login and logout times are written from here and may be ahead of what Redis returned.
  if (const Device* current = registry_.device(incoming.product, incoming.id)) {
    incoming.last_online = std::max(incoming.last_online, current->last_online);
    incoming.last_offline = std::max(incoming.last_offline, current->last_offline);
    incoming.activated = incoming.activated || current->activated;
  }
  registry_.put_device(std::move(incoming));
}

void Gate::on_snapshot(Snapshot snapshot) {
  for (const auto& problem : snapshot.problems) log_.warning("iotgate: skipped malformed entry: " + problem);
  Registry& next = *snapshot.registry;
  for (const auto& [key, d] : registry_.devices()) {
    if (Device* n = next.device_mut(d.product, d.id)) {
      n->last_online = std::max(n->last_online, d.last_online);
      n->last_offline = std::max(n->last_offline, d.last_offline);
      n->activated = n->activated || d.activated;
    }
  }
  registry_ = std::move(next);
  ++entries_epoch_;
  refresh_account_summaries();
  ota_.load(std::move(snapshot.ota));
  bool first = !loaded_;
  loaded_ = true;
  log_.notice("iotgate: " + std::string(first ? "loaded" : "reloaded") + " " +
              std::to_string(registry_.product_count()) + " products, " + std::to_string(registry_.device_count()) +
              " devices, " + std::to_string(registry_.account_count()) + " accounts from Redis");
  revalidate([](const Identity&) { return true; });
}

void Gate::on_update(const EntityUpdate& u) {
  std::string err;
  if (!u.fields) ++entries_epoch_;  // a removal may free entries that sessions point to
  switch (u.kind) {
    case EntityUpdate::Kind::product: {
      if (!u.fields) registry_.remove_product(u.id);
      else if (auto p = product_from_fields(u.id, *u.fields, &err)) registry_.put_product(std::move(*p));
      else {
        log_.warning("iotgate: product change ignored: " + err);
        return;
      }
      revalidate([&](const Identity& id) { return id.product == u.id; });
      break;
    }
    case EntityUpdate::Kind::device: {
      size_t colon = u.id.find(':');
      if (colon == std::string::npos) return;
      std::string product = u.id.substr(0, colon), device = u.id.substr(colon + 1);
      if (!u.fields) registry_.remove_device(product, device);
      else if (auto d = device_from_fields(product, device, *u.fields, &err)) merge_device(std::move(*d));
      else {
        log_.warning("iotgate: device change ignored: " + err);
        return;
      }
      revalidate([&](const Identity& id) { return id.product == product && id.device == device; });
      break;
    }
    case EntityUpdate::Kind::task:
      ota_.on_task(u.id, u.fields);
      break;
    case EntityUpdate::Kind::account: {
      if (!u.fields) registry_.remove_account(u.id);
      else if (auto a = account_from_fields(u.id, *u.fields, &err)) registry_.put_account(std::move(*a));
      else {
        log_.warning("iotgate: account change ignored: " + err);
        return;
      }
      verified_.erase("account:" + u.id);
      refresh_account_summaries();
      revalidate([&](const Identity& id) { return id.kind == SessionKind::account && id.account == u.id; });
      break;
    }
  }
}

std::optional<std::string> Gate::session_invalid_reason(const Identity& id) const {
  if (id.kind == SessionKind::account) {
    if (!registry_.account(id.account)) return "account deleted";
    return std::nullopt;
  }
  const Product* p = registry_.product(id.product);
  if (!p) return "product deleted";
  if (!p->enabled) return "product disabled";
  if (id.kind == SessionKind::lierda_auth || id.kind == SessionKind::lierda_v2)
    if (p->openid != id.openid) return "product changed";
  const Device* d = registry_.device(id.product, id.device);
  if (d && !d->enabled) return "device disabled";
  if (!d && has_device(id.kind)) return "device deleted";
  if (id.kind == SessionKind::krt_register && !p->dynamic_register) return "dynamic registration turned off";
  return std::nullopt;
}

void Gate::revalidate(const std::function<bool(const Identity&)>& in_scope) {
  std::vector<std::string> kicks;
  for (const auto& [cid, s] : sessions_) {
    if (!in_scope(s.identity)) continue;
    if (auto why = session_invalid_reason(s.identity)) {
      log_.notice("iotgate: disconnecting '" + cid + "': " + *why);
      kicks.push_back(cid);
    }
  }
  for (const auto& cid : kicks) effects_.kick(cid);
}

}  // namespace iotgate
