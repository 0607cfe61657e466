#include "iotgate/gate.h"

#include <openssl/evp.h>

#include <algorithm>
#include <set>
#include <utility>
#include <vector>

#include <rapidjson/document.h>

#include "iotgate/crypto.h"
#include "iotgate/fleet.h"
#include "iotgate/ids.h"
#include "iotgate/json.h"
#include "iotgate/topic.h"

namespace iotgate {
namespace {

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

}  // namespace

// --- what the modules share --------------------------------------------------------------------------------

bool VerifiedPasswords::verify(const std::string& name, const Pbkdf2Hash& hash, std::string_view password) {
  std::string material(hash.hash.begin(), hash.hash.end());
  std::string digest = sha256(material, password);
  auto it = verified_.find(name);
  if (it != verified_.end() && constant_time_equal(it->second, digest)) return true;
  if (cached_only_ || !verify_pbkdf2(hash, password)) return false;
  verified_[name] = std::move(digest);
  return true;
}

void GateContext::touch(Touch touch) const {
  load_changes.note(touch.product, touch.device);
  StoreJob job;
  job.type = StoreJob::Type::touch_device;
  job.durable = true;
  job.touch = std::move(touch);
  effects.submit(std::move(job));
}

Gate::Gate(Config config, Log& log, Effects& effects, Clock clock)
    : config_(std::move(config)), log_(log), effects_(effects), clock_(std::move(clock)),
      ota_(config_, log_, effects_, clock_), bans_(config_),
      context_{config_, log_, effects_, clock_, registry_, ota_, replies_, passwords_, load_changes_},
      lierda_(context_), krt_(context_), emu_(context_), accounts_(context_) {
  ota_.set_broker_id(broker_id_);
}

ProtocolModule& Gate::module_of(Protocol protocol) const {
  switch (protocol) {
    case Protocol::lierda: return *modules_[0];
    case Protocol::krt: return *modules_[1];
    case Protocol::emu: return *modules_[2];
  }
  return *modules_[0];
}

ProtocolModule* Gate::module_of(SessionKind kind) const {
  std::optional<Protocol> protocol = protocol_of(kind);
  return protocol ? &module_of(*protocol) : nullptr;
}

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
Resolution Gate::resolve(const ClientInfo& client, PasswordArg password) {
  if (!client.username) return {std::nullopt, {"no-username", "no username"}};
  static constexpr const char* kNames[] = {"lierda", "krt", "account", "emu"};  // resolvers_'s, for the metrics
  for (size_t i = 0; i < std::size(resolvers_); ++i) {
    if (auto r = resolvers_[i]->resolve(client.client_id, *client.username, password)) {
      r->claimed_by = kNames[i];
      return std::move(*r);
    }
  }
  return {std::nullopt, {"unknown-login", "unknown user"}};
}

bool Gate::authenticate(const ClientInfo& client, std::optional<std::string_view> password) {
  if (!loaded_) {
    Refusal refusal{"not-loaded", "device data not loaded from Redis yet"};
    refuse_log(client, refusal);
    count_refusal("unknown", refusal);
    return false;
  }
  int64_t now = clock_();
  std::string address(client.address);
  const bool counted = !address.empty() && config_.auth_fail_limit > 0;
  std::string username(client.username ? *client.username : client.client_id);
  std::optional<std::string_view> pw = password;
  if (counted) {
    if (auto ban = bans_.ban_of(address, username, now)) {
      // A ban stops guessing, not devices: behind a load balancer or NAT every client shares the address. A login
      // whose credentials verify without PBKDF2 still gets in (a device's key or secret, which no one guesses in
      // thirty tries, or a password that verified before); one that would need PBKDF2 or fails is refused unchecked.
      passwords_.set_cached_only(true);
      Resolution r = resolve(client, &pw);
      passwords_.set_cached_only(false);
      if (r.identity) {
        log_.limited(LogLevel::info, "banned-address-valid-login",
                     "iotgate: login of client '" + std::string(client.client_id) + "' from banned address " +
                         address + " accepted: its credentials are valid");
        after_login(client, *r.identity, r.device);
        return true;
      }
      Refusal refusal{"address-banned", "address banned until " + std::to_string(ban->first) +
                                            (ban->second == LoginBans::Ban::username ? " for this username" : "") +
                                            " after repeated failed logins"};
      refuse_log(client, refusal);
      count_refusal(r.claimed_by, refusal);
      return false;
    }
  }
  Resolution r = resolve(client, &pw);
  if (!r.identity) {
    refuse_log(client, r.refusal);
    count_refusal(r.claimed_by, r.refusal);
    LoginBans::Ban ban = counted ? bans_.count_failure(address, username, now) : LoginBans::Ban::none;
    if (ban == LoginBans::Ban::username) ++counters_.bans_username;
    if (ban == LoginBans::Ban::address) ++counters_.bans_address;
    if (ban == LoginBans::Ban::username)
      log_.warning("iotgate: banning address " + address + " for username '" + username + "' for " +
                   std::to_string(config_.auth_ban_seconds) + " s after " + std::to_string(config_.auth_fail_limit) +
                   " failed logins within " + std::to_string(config_.auth_fail_window) + " s");
    else if (ban == LoginBans::Ban::address)
      log_.warning("iotgate: banning address " + address + " for " + std::to_string(config_.auth_ban_seconds) +
                   " s after " + std::to_string(config_.auth_fail_limit) + " failed logins under " +
                   std::to_string(config_.auth_spray_usernames) + " or more usernames within " +
                   std::to_string(config_.auth_fail_window) + " s");
    return false;
  }
  after_login(client, *r.identity, r.device);
  return true;
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
  if (const Session* held = sessions_.find(client.client_id)) {
    if (held->handle != client.handle) departed_.insert_or_assign(held->handle, held->identity);
    count_session(held->identity.kind, -1);  // replaced below
  }
  ++counters_.accepted[static_cast<size_t>(id.kind)];
  count_session(id.kind, +1);
  departed_.erase(client.handle);  // the broker may give a new connection a departed one's address
  const int64_t started_ms = wall_ms();
  sessions_.put(client.client_id, Session{id, client.handle, started_ms, d, account, entries_epoch_, {}});
  // The claim of the client id, which the other brokers on this Redis read (on_fleet_event) to end an older session
  // of the same id, as MQTT's one session per client id requires across brokers.
  Touch touch{.claim = std::move(cid), .claim_at = started_ms};
  if (!d) {
    context_.touch(std::move(touch));
    return;
  }
  touch.product = id.product;
  touch.device = id.device;
  d->last_online = std::max(d->last_online, clock_());
  touch.last_online = d->last_online;  // the maximum: Redis takes it as it comes
  if (ProtocolModule* module = module_of(id.kind)) module->on_login(touch.claim, client.handle, id, *d, touch);
  context_.touch(std::move(touch));
}

// --- ACL ---------------------------------------------------------------------------------------------------

bool Gate::check_acl(const char* client_id, const void* handle, const char* username, Access access,
                     TopicText topic) {
  if (allows(sessions_.find(handle, client_id), handle, client_id, username, access, topic)) return true;
  count_denial(access);
  return false;
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
    if (!device_allows(view.kind, view.prefix, client_id, Access::write, topic, &suffix)) {
      count_denial(Access::write);
      return Verdict::drop;
    }
    if (retain) [[unlikely]] note_retained(found, topic.view(), payload.empty());
    return answer_platform(found, view.kind, client_id, handle, topic, suffix, payload);
  }
  // Accounts, and the write checks that are no client's PUBLISH (see above): judged, never answered.
  if (!allows(found, handle, client_id, username, Access::write, topic)) {
    count_denial(Access::write);
    return Verdict::drop;
  }
  if (retain) [[unlikely]] note_retained(found, topic.view(), payload.empty());
  return Verdict::pass;
}

MetricSamples Gate::metrics(int64_t now) const {
  MetricSamples m;
  constexpr SessionKind kinds[] = {SessionKind::lierda_auth, SessionKind::lierda_v2,   SessionKind::krt_register,
                                   SessionKind::krt_device,  SessionKind::emu_gateway, SessionKind::account};
  static_assert(std::size(kinds) == kSessionKinds);
  for (SessionKind kind : kinds) {
    const size_t i = static_cast<size_t>(kind);
    auto protocol = protocol_of(kind);
    const char* proto = protocol ? to_string(*protocol) : "account";
    m[metric_key("iotgate_logins_accepted_total", {{"protocol", proto}, {"kind", to_string(kind)}})] =
        std::to_string(counters_.accepted[i]);
    m[metric_key("iotgate_sessions", {{"kind", to_string(kind)}})] = std::to_string(counters_.sessions[i]);
  }
  for (const auto& [key, n] : counters_.refused)
    m[metric_key("iotgate_logins_refused_total", {{"protocol", key.first}, {"reason", key.second}})] = std::to_string(n);
  constexpr std::pair<Access, const char*> accesses[] = {
      {Access::read, "read"}, {Access::write, "write"}, {Access::subscribe, "subscribe"}, {Access::unsubscribe, "unsubscribe"}};
  for (const auto& [access, name] : accesses)
    m[metric_key("iotgate_acl_denials_total", {{"access", name}})] =
        std::to_string(counters_.acl_denied[static_cast<size_t>(access)]);
  m[metric_key("iotgate_bans_total", {{"scope", "username"}})] = std::to_string(counters_.bans_username);
  m[metric_key("iotgate_bans_total", {{"scope", "address"}})] = std::to_string(counters_.bans_address);
  m[metric_key("iotgate_bans_active", {})] = std::to_string(bans_.active(now));
  m[metric_key("iotgate_loaded", {})] = loaded_ ? "1" : "0";
  ota_.metrics(m);
  return m;
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
  for (const ProtocolModule* module : modules_)
    if (auto device = module->device_of_topic(levels)) return device;
  return std::nullopt;
}

Verdict Gate::answer_platform(const Sessions::Found& found, SessionKind kind, const char* client_id,
                              const void* handle, TopicText topic, std::string_view suffix, std::string_view payload) {
  ProtocolModule* module = module_of(kind);
  const Handling handling = module ? module->handling(kind, suffix) : Handling::deliver;
  if (handling == Handling::deliver) return Verdict::pass;
  if (handling == Handling::handle) return run_handler(*module, *found.session, client_id, handle, topic, suffix, payload);
  // Acknowledging leaves the session table alone: no copy of the identity on that per-message path.
  Session& session = *found.session;
  std::pair<Gate*, Session*> lookup{this, &session};
  module->acknowledge(DevicePublish{client_id, handle, session.identity, session.started_ms, nullptr, topic, suffix,
                                    payload, &Gate::device_of_session, &lookup});
  return Verdict::pass;
}

Device* Gate::device_of_session(void* gate_and_session) {
  auto* lookup = static_cast<std::pair<Gate*, Session*>*>(gate_and_session);
  return lookup->first->device_of(*lookup->second);
}

Verdict Gate::run_handler(ProtocolModule& module, Session& session, const char* client_id, const void* handle,
                          TopicText topic, std::string_view suffix, std::string_view payload) {
  if (payload.size() > config_.max_payload) {
    log_.limited(LogLevel::notice, "oversized",
                 "iotgate: dropped " + std::to_string(payload.size()) + "-byte message on '" +
                     std::string(topic.view()) + "' from '" + std::string(client_id) + "': larger than max_payload " +
                     std::to_string(config_.max_payload));
    return Verdict::drop;
  }
  // Handlers may change sessions_: they get copies, and the OTA report memory is written back after.
  Identity copy = session.identity;
  std::string last_report = session.last_report;
  std::pair<Gate*, Session*> lookup{this, &session};
  bool accepted = module.handle(DevicePublish{client_id, handle, copy, session.started_ms, &last_report, topic,
                                              suffix, payload, &Gate::device_of_session, &lookup});
  if (Session* s = sessions_.find(handle, client_id).session) s->last_report = std::move(last_report);
  return accepted ? Verdict::pass : Verdict::drop;
}

void Gate::ask_firmware(const std::string& product, const std::string& device) {
  for (const auto& [cid, s] : sessions_)
    if (s.identity.product == product && s.identity.device == device)
      if (ProtocolModule* module = module_of(s.identity.kind)) module->ask_firmware(cid, s.identity);
}

void Gate::on_command(const Command& command) {
  auto get = [&](const char* f) {
    auto it = command.fields.find(f);
    return it == command.fields.end() ? std::string() : it->second;
  };
  std::string kind = get("kind");
  if (kind == "fleet") {
    on_fleet_event(command.fields);
  } else if (kind == "ota_progress") {
    // Another broker's (or Redis's own, broker "") progress of a device; ours is known already.
    if (get("broker") != broker_id_) ota_.on_progress_elsewhere(get("task"), get("device"), get("progress"));
  } else if (kind == "ask_firmware") {
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
      if (!has_device(s.identity.kind) || s.identity.product != t->product) continue;
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
    // A command to an EMU gateway (emu_command.lua): carried out by the broker that holds the gateway's session, so
    // that brokers bridged to each other deliver it once. A gateway connected nowhere does not get it.
    std::string topic = get("topic"), product = get("product"), device = get("device");
    if (!is_valid_topic(topic) || product.empty() || device.empty()) {
      log_.warning("iotgate: publish command without a valid topic, product and device ignored");
      return;
    }
    const bool held = std::any_of(sessions_.begin(), sessions_.end(), [&](const auto& entry) {
      const Identity& id = entry.second.identity;
      return id.kind == SessionKind::emu_gateway && id.product == product && id.device == device;
    });
    if (!held) return;
    effects_.publish(topic, get("payload"), 1);
    log_.info("iotgate: published a command on '" + topic + "'");
  } else {
    log_.warning("iotgate: unknown command '" + kind + "' ignored");
  }
}

// What another broker on the same Redis wrote with its login and logout times (RedisStore::touch_many; fleet.h): the
// client ids its sessions claimed, and devices' logout times.
void Gate::on_fleet_event(const Fields& fields) {
  auto field = [&](const std::string& name) -> std::string_view {
    auto it = fields.find(name);
    return it == fields.end() ? std::string_view() : std::string_view(it->second);
  };
  const std::string_view broker = field("broker");
  if (broker.empty() || broker == broker_id_) return;  // our own: applied when it happened
  if (brokers_heard_.insert_or_assign(std::string(broker), clock_()).second) {  // a new one: it hears of this one at once
    last_heartbeat_ = 0;
    heartbeat(clock_());
  }
  int64_t at = 0;
  std::string_view client_id;
  for (std::string_view claims = field("claims"); fleet::next(claims, at, client_id);) {
    Session* s = sessions_.find(client_id);
    // The later claim keeps the id (ties broken by broker id): every broker compares the same two claims, so
    // exactly one session survives whatever order the brokers read them in.
    if (!s || s->taken_over_at || std::pair(at, broker) <= std::pair(s->started_ms, std::string_view(broker_id_)))
      continue;
    s->taken_over_at = std::max<int64_t>(at / 1000, 1);
    log_.notice("iotgate: disconnecting '" + std::string(client_id) + "': its client id logged in on another broker");
    effects_.kick(std::string(client_id));
  }
  int64_t off = 0;
  std::string_view device;
  for (std::string_view offline = field("offline"); fleet::next(offline, off, device);) {
    const size_t colon = device.find(':');
    if (colon == std::string_view::npos) continue;
    // A type-1 password of a session that ended on another broker is refused here from now on (replay).
    const std::string_view product = device.substr(0, colon), id = device.substr(colon + 1);
    if (Device* d = registry_.device_mut(product, id)) {
      d->last_offline = std::max(d->last_offline, off);
      load_changes_.note(product, id);
    }
  }
}

void Gate::heartbeat(int64_t now) {
  if (!loaded_) return;
  if (now - last_heartbeat_ >= kHeartbeat) {
    last_heartbeat_ = now;
    context_.touch(Touch{.alive = true});
  }
  std::erase_if(brokers_heard_, [now](const auto& b) { return now - b.second > kBrokerSilence; });
  ota_.set_fleet_size(1 + brokers_heard_.size());
}

void Gate::tick() {
  departed_.clear();
  if (retired_ && !retired_->dispose_some()) retired_.reset();
  for (const PendingReply& p : replies_.take_due()) answer(p, true, "", registry_.device(p.product, p.device));
  int64_t now = clock_();
  if (now == last_sweep_) return;
  last_sweep_ = now;
  heartbeat(now);
  ota_.sweep_timeouts();
  if (now % 60 == 0) bans_.forget_quiet(now);
}

void Gate::on_result(const StoreResult& result) {
  std::optional<PendingReply> waiting = replies_.take(result.token);
  if (!waiting) return;
  const PendingReply& p = *waiting;
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

void Gate::answer(const PendingReply& p, bool ok, const std::string& error, const Device* d) {
  if (!still_asking(p)) {
    log_.notice("iotgate: reply for " + p.product + "/" + p.device + " not sent: client '" + p.client_id +
                "' has left or is now another connection");
    return;
  }
  module_of(p.protocol).answer(p, ok, error, d);
}

bool Gate::still_asking(const PendingReply& p) const {
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
  // Ended by a newer session of its client id on another broker: offline when that one began (not later, which
  // would mark the device offline while it is connected there).
  const int64_t ended = s->taken_over_at ? s->taken_over_at : clock_();
  sessions_.erase(client_id);
  count_session(id.kind, -1);
  mark_offline(id, d, ended);
  departed_.insert_or_assign(handle, std::move(id));  // its will is checked next
}

void Gate::on_shutdown() {
  int64_t now = clock_();
  for (const auto& [cid, s] : sessions_)
    mark_offline(s.identity, registry_.device_mut(s.identity.product, s.identity.device), now);
  sessions_.clear();
  counters_.sessions = {};
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
  context_.touch(Touch{.product = id.product, .device = id.device, .last_offline = now});
}

// --- changes from Redis ------------------------------------------------------------------------------------

namespace {
// Login and logout times are written from the broker and may be ahead of what Redis returned.
void keep_later_times(Device& incoming, const Device& current) {
  incoming.last_online = std::max(incoming.last_online, current.last_online);
  incoming.last_offline = std::max(incoming.last_offline, current.last_offline);
  incoming.activated = incoming.activated || current.activated;
}
}  // namespace

void Gate::merge_device(Device incoming) {
  if (const Device* current = registry_.device(incoming.product, incoming.id)) keep_later_times(incoming, *current);
  registry_.put_device(std::move(incoming));
}

void Gate::carry_over(Device& incoming) {
  load_changes_.loading = true;
  if (const Device* current = registry_.device(incoming.product, incoming.id)) keep_later_times(incoming, *current);
}

void Gate::on_snapshot(Snapshot snapshot) {
  for (const auto& problem : snapshot.problems) log_.warning("iotgate: skipped malformed entry: " + problem);
  Registry& next = *snapshot.registry;
  for (const std::string& key : load_changes_.devices) {
    const size_t colon = key.find(':');
    const std::string_view product = std::string_view(key).substr(0, colon), id = std::string_view(key).substr(colon + 1);
    const Device* current = registry_.device(product, id);
    Device* n = next.device_mut(product, id);
    if (current && n) keep_later_times(*n, *current);
  }
  load_changes_ = LoadChanges{};
  retired_ = std::make_unique<Registry>(std::move(registry_));  // one still being freed goes at once
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
      passwords_.forget("account:" + u.id);
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
  if (auto why = module_of(id.kind)->invalid_reason(id, *p)) return why;
  const Device* d = registry_.device(id.product, id.device);
  if (d && !d->enabled) return "device disabled";
  if (!d && has_device(id.kind)) return "device deleted";
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
