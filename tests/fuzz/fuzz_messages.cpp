// fuzz_messages: every JSON message handler of Gate::on_publish (Lierda auth requests, KRT registration, the OTA
// handlers: Lierda firmware_report / ota_notify_ack, plain and encrypted, KRT ota/post, EMU results), the reply
// paths of Gate::on_result, and what can change under them (registry and task changes, CLI commands, timeouts).
//
// Each run logs in the sessions of sessions() on a fresh gate (fuzz_common.h fixture plus the OTA tasks of
// ota_fixture()), then plays the input as a list of operations separated by NUL bytes. Each operation is one
// byte OP followed by its PAYLOAD (OP - 'a' is taken modulo the number of operations):
//   i < T (T = rows of kTable): PAYLOAD is published by session kTable[i].session on kTable[i].topic; for an
//       `encrypt` row PAYLOAD is the inner JSON, sent as {"MessageId":n,"HeaderCtrl":8|9,"Payload":"<hex of
//       AES under the device's session key>","Version":"2.0"}
//   T+0 a StoreResult for a job still pending: PAYLOAD[0] - '0' picks the job, counting back from the newest;
//       PAYLOAD[1] - '0' the outcome (resolve()),
//       the rest are "key=value" lines of the stored device for the "custom" outcome
//   T+1 a StoreResult for a token that is not pending (PAYLOAD: decimal token; empty: the last one answered)
//   T+2 / T+3 a change of the device / product of session PAYLOAD[0] ("key=value" lines; none = deleted)
//   T+4 session PAYLOAD[0] disconnects
//   T+5 a login from extra_logins()[PAYLOAD[0]] (another device taking over a client id, or a reconnect)
//   T+6 a change of OTA task kTasks[PAYLOAD[0]] ("key=value" lines; none = deleted)
//   T+7 a CLI command ("key=value" lines: kind=push|ask_firmware|publish, task, devices, product, device, topic,
//       payload)
//   T+8 the clock moves PAYLOAD[0] * 37 seconds (x 1000 when PAYLOAD[1] is odd) and the gate ticks
// To cover a new handler, add a row to kTable (and a session to sessions() if a new kind of client sends it).
//
// Invariants: no crash; every message the gate sends is one JSON object without duplicate keys, valid UTF-8
// when everything that went in was; a reply of the same HeaderCtrl (auth 1, firmware report 8) or of KRT CMD 20
// echoes the request's MessageId / ID exactly; a message to a client goes to a topic that client's session may
// subscribe to, and is about that session's own device; an encrypted device's Payload decrypts under its session
// key; a DeviceSecret / DEVICE_SECRET is the stored secret of that device and is never sent to an auth type 2
// device, nor a session key to an AUTH session of one; a secret or session key is never sent while a message is
// handled (only from the tick), and the exchanges' replies go at QoS 0, all else at QoS 1; the will of a
// connection whose client id was taken over passes only where that connection itself may write; no other field,
// no fan-out publish and no log line carries a secret (ProductKeys, ProductSecrets, DeviceSecrets, session keys,
// passwords) unless the input itself did; the store result of a request answers it exactly once; a result for a
// token not pending sends nothing; a token is never reused.
#include <rapidjson/document.h>
#include <rapidjson/error/en.h>

#include <cmath>
#include <deque>
#include <map>
#include <set>

#include "fuzz_common.h"

using namespace iotgate;

namespace {

// How the OTA handlers parse devices' JSON (src/lierda/ota.cpp, src/krt/krt.cpp, src/emu/emu.cpp): trailing commas, NaN and Infinity.
constexpr unsigned kLenient = rapidjson::kParseTrailingCommasFlag | rapidjson::kParseNanAndInfFlag;

struct SessionSpec {
  const char* cid;
  const char* user;
  std::string password;
};

std::string v2_password(const char* secret, const char* pid, const char* eui, const char* key) {
  return *lierda_v2_password(secret, pid, eui, key, std::nullopt);
}

const std::vector<SessionSpec>& sessions() {
  using namespace fuzz;
  static const std::vector<SessionSpec> s = {
      /* 0 */ {"AA30C505-20MQTTJ000121", "AUTH-7ED01E2A-AA30C505", kL1Key},  // auth type 1, registered
      /* 1 */ {"AA30C500-NEWDEV0001", "AUTH-7ED01E2A-AA30C500", kL0Key},     // auth type 0, new device
      /* 2 */ {"AA30C500-FREEDEV001", "AUTH-7ED01E2A-AA30C500", kL0Key},     // auth type 0, has a secret
      /* 3 */ {"AA30C502-TYPE2DEV01", "AUTH-7ED01E2A-AA30C502", kL2Key},     // auth type 2
      /* 4 */ {"AA30C50E-ENCDEV0001", "AUTH-7ED01E2A-AA30C50E", kLEKey},     // encrypted product
      /* 5 */ {"AA30C505-UNREG0001", "AUTH-7ED01E2A-AA30C505", kL1Key},      // type 1, not registered
      /* 6 */ {"AA30C505-NOSECRET01", "AUTH-7ED01E2A-AA30C505", kL1Key},     // type 1, no secret yet
      /* 7 */ {"KP1.NEWK1", "NEWK1", kKP1Secret},                             // KRT registration, auto-create
      /* 8 */ {"KP1.KD3", "KD3", kKP1Secret},                                 // KRT registration, no secret yet
      /* 9 */ {"KP1.KD1", "KD1", kKP1Secret},                                 // KRT registration, has a secret
      /* 10 */ {"KP1", "NEWK2", kKP1Secret},                                  // KRT registration, seed's client id
      /* 11 */ {"V2_AA30C505.20MQTTJ000121_0_1675404867", "7ED01E2A-AA30C505-20MQTTJ000121",
                v2_password(kSecret, kL1, kEui, kL1Key)},
      /* 12 */ {"V2_AA30C50E.ENCDEV0001_0_1", "7ED01E2A-AA30C50E-ENCDEV0001",
                v2_password(kSecretLE1, kLE, "ENCDEV0001", kLEKey)},  // no session key: a rekey starts at login
      /* 13 */ {"KP2.KD1", "KD1", kKP2KD1Secret},                     // KRT device
      /* 14 */ {"gw1", "gw1", kGw1Pass},                              // EMU wudun gateway
      /* 15 */ {"gw2", "gw2", kGw2Pass},                              // EMU tenant gateway
      /* 16 */ {"operator:1", "operator", kOpPass},                   // service account
      /* 17 */ {"V2_AA30C50E.ENCDEV0002_0_1", "7ED01E2A-AA30C50E-ENCDEV0002",
                v2_password(kSecretLE2, kLE, "ENCDEV0002", kLEKey)},  // encrypted, session key valid
  };
  return s;
}

// Logins an operation can add: another device taking over a client id in use, or a reconnect.
const std::vector<SessionSpec>& extra_logins() {
  using namespace fuzz;
  static const std::vector<SessionSpec> s = {
      {"KP1", "KD2", kKD2Secret},    // a KRT device on the seed's shared client id (takes over session 10's)
      {"KP1", "NEWK3", kKP1Secret},  // another registration on the shared client id
      {"KP1.NEWK1", "NEWK1", kKP1Secret},
      {"AA30C500-NEWDEV0001", "AUTH-7ED01E2A-AA30C500", kL0Key},
      {"V2_AA30C50E.ENCDEV0001_0_1", "7ED01E2A-AA30C50E-ENCDEV0001",
       v2_password(kSecretLE1, kLE, "ENCDEV0001", kLEKey)},
      {"V2_AA30C505.20MQTTJ000121_0_1675404867", "7ED01E2A-AA30C505-20MQTTJ000121",
       v2_password(kSecret, kL1, kEui, kL1Key)},
  };
  return s;
}

struct Route {
  int session;
  const char* topic;  // relative to the session's prefix unless it starts with '/'
  bool encrypt = false;
};
const Route kTable[] = {
    {0, "/sys/device/auth"},
    {1, "/sys/device/auth"},
    {2, "/sys/device/auth"},
    {3, "/sys/device/auth"},
    {4, "/sys/device/auth"},
    {5, "/sys/device/auth"},
    {6, "/sys/device/auth"},
    {7, "register/post"},
    {8, "register/post"},
    {9, "register/post"},
    {10, "register/post"},
    {11, "firmware_report"},
    {11, "ota_notify_ack"},
    {11, "uplink"},
    {12, "firmware_report"},
    {13, "ota/post"},
    {14, "ota/emu_version/result"},
    {14, "ota/emu_upgrade/result"},
    {14, "ota/emu_upgrade_result/result"},
    {15, "ota/emu_version/result"},
    {16, "/sys/device/auth"},
    {7, "/sys/device/auth"},
    {17, "firmware_report", true},
    {17, "ota_notify_ack", true},
    {17, "firmware_report"},
};
constexpr int kT = sizeof kTable / sizeof kTable[0];
enum ExtraOp {
  kResult = kT, kStrayResult, kDeviceUpdate, kProductUpdate, kDisconnect, kLogin, kTaskUpdate, kCommand, kTick, kOps
};

const char* kTasks[] = {"T-L1", "T-L1M", "T-LE", "T-KP2", "T-TEST", "T-NEW"};

iotgate::OtaData ota_fixture() {
  OtaData d;
  auto task = [&](const char* id, Fields f) {
    f.emplace("name", std::string("fw-") + id);
    f.emplace("type", "2");
    f.emplace("status", "1");
    f.emplace("target_version_url", std::string("http://fw.example/") + id + ".bin");
    f.emplace("target_version_md5", "0123456789abcdef0123456789abcdef");
    f.emplace("target_version_size", "1024");
    std::string err;
    auto t = ota_task_from_fields(id, f, &err);
    if (!t) fuzz::fail("harness-task", __FILE__, __LINE__, err);
    d.tasks.push_back(*t);
  };
  task("T-L1", {{"product_id", fuzz::kL1}, {"from_version", "v1.0"}, {"target_version", "v2.0"}});
  task("T-L1M", {{"product_id", fuzz::kL1}, {"identify", "module1"}, {"from_version", "m1"}, {"target_version", "m2"},
                 {"task_type", "1"}});
  task("T-LE", {{"product_id", fuzz::kLE}, {"from_version", "v1.0"}, {"target_version", "v2.0"}, {"ack_timeout", "60"}});
  task("T-KP2", {{"product_id", "KP2"}, {"from_version", "1.0.0"}, {"target_version", "1.0.1"}, {"rate_limit", "2"}});
  task("T-TEST", {{"product_id", fuzz::kL1}, {"from_version", "t1"}, {"target_version", "t2"}, {"tag_type", "1"},
                  {"device_list", "[\"20MQTTJ000121\"]"}});
  return d;
}

const std::set<std::string> kEchoKeys = {"MessageId", "ID"};
const std::set<std::string> kSecretKeys = {"DeviceSecret", "DEVICE_SECRET"};

struct Harness {
  fuzz::GateUnderTest g;
  std::deque<int> handle_store;
  std::map<std::string, const void*> handles;  // client id -> handle of its latest connection
  std::map<std::string, std::string> users;    // client id -> username of its latest connection
  size_t seen_published = 0, seen_broadcasts = 0, seen_logs = 0, seen_jobs = 0;
  std::vector<uint64_t> pending;                      // tokens submitted and not yet answered
  std::map<uint64_t, std::string> request_payload;    // token -> the message that asked for it
  std::set<uint64_t> answered;
  uint64_t last_answered = 0;
  std::vector<std::string> secrets;                   // every secret known so far
  std::string inputs;                                 // everything the fuzzer put in (payloads, store fields)
  bool inputs_utf8 = true;
  std::string current_payload;
  bool in_message = false;
  int message_seq = 0;

  Harness() : g(Config{}, fuzz::kNow, ota_fixture()) { secrets = fuzz::fixture_secrets(); }

  bool login(const SessionSpec& s) {
    handle_store.push_back(0);
    const void* h = &handle_store.back();
    ClientInfo c{s.cid, std::string_view(s.user), "192.0.2.7", h};
    std::optional<Identity> held;  // the session this login may take the client id from
    if (const Identity* id = g.gate.session(s.cid)) held = *id;
    auto held_handle = handles.find(s.cid);
    const void* old_handle = held_handle == handles.end() ? nullptr : held_handle->second;
    std::string old_user = users[s.cid];
    bool ok = g.gate.authenticate(c, std::string_view(s.password));
    if (ok) {
      handles[s.cid] = h;
      users[s.cid] = s.user;
    }
    after_op();
    if (ok && held && old_handle && held->kind != SessionKind::account) check_will_of_replaced(*held, old_handle, s.cid, old_user);
    return ok;
  }

  // The will of a connection whose client id was just taken over is checked with that connection: it may carry
  // only what that connection itself may write, never what the new holder of the id may.
  void check_will_of_replaced(const Identity& old_id, const void* old_handle, const std::string& cid,
                              const std::string& old_user) {
    for (const Route& r : kTable) {
      std::string topic = topic_of(r);
      bool passed = g.gate.on_publish(cid.c_str(), old_handle, old_user.c_str(), topic, "{}") == Verdict::pass;
      FUZZ_CHECK("will-with-other-rights", !passed || device_session_allows(old_id, Access::write, topic),
                 "the will of the replaced " + std::string(to_string(old_id.kind)) + " connection of '" + cid +
                     "' passed on '" + topic + "'");
    }
    after_op();
  }

  // Topics are fixed at the start: a session that is gone or was taken over keeps sending on its own topics.
  std::map<int, std::string> prefixes;
  std::string topic_of(const Route& r) { return r.topic[0] == '/' ? r.topic : prefixes[r.session] + r.topic; }

  // The sanitised "key=value" lines of a device hash from the fuzzer. A "secret" becomes FZ-SECRET-<value>, so
  // a secret is always recognisable; no other value may carry a known secret.
  Fields fields_from(std::string_view text) {
    Fields f;
    size_t start = 0;
    while (start <= text.size()) {
      size_t nl = text.find('\n', start);
      if (nl == std::string_view::npos) nl = text.size();
      std::string_view line = text.substr(start, nl - start);
      start = nl + 1;
      size_t eq = line.find('=');
      if (eq == std::string_view::npos) continue;
      std::string key(line.substr(0, eq)), value(line.substr(eq + 1));
      if (key == "secret") {
        value = "FZ-SECRET-" + value;
        secrets.push_back(value);
      } else {
        for (const auto& s : secrets) {
          for (size_t p; (p = value.find(s)) != std::string::npos;) value.replace(p, s.size(), "-");
        }
        for (size_t p; (p = value.find("FZ-SECRET-")) != std::string::npos;) value.replace(p, 10, "-");
      }
      inputs += key + "=" + value + "\n";
      if (!fuzz::valid_utf8(key) || !fuzz::valid_utf8(value)) inputs_utf8 = false;
      f[key] = value;
    }
    return f;
  }

  // The device fields a real store would return after an issue job.
  Fields stored_fields(const StoreJob& job, bool enabled) {
    Fields f;
    const Device* d = g.gate.registry().device(job.product, job.device);
    f["enabled"] = enabled ? "1" : "0";
    f["origin"] = d ? (d->created_by_device ? "auto" : "cli") : job.origin;
    f["secret"] = d && !d->secret.empty() ? d->secret.str() : job.candidate_secret;
    if (d && d->activated) f["activated"] = "1";
    for (const auto& [k, v] : job.fields) f[k] = v;
    return f;
  }

  void resolve(std::string_view payload) {
    if (pending.empty()) return;
    // PAYLOAD[0] - '0' counts back from the newest pending job.
    size_t back = payload.empty() ? 0 : static_cast<uint8_t>(static_cast<uint8_t>(payload[0]) - '0') % pending.size();
    size_t idx = pending.size() - 1 - back;
    uint64_t token = pending[idx];
    pending.erase(pending.begin() + static_cast<long>(idx));
    const StoreJob* job = nullptr;
    for (const auto& j : g.effects.jobs)
      if (j.token == token) job = &j;
    StoreResult r;
    r.token = token;
    int outcome = payload.size() > 1 ? static_cast<uint8_t>(payload[1]) % 8 : 0;
    std::string_view rest = payload.size() > 2 ? payload.substr(2) : std::string_view();
    static const char* kErrors[] = {"unknown_product", "unknown_device", "disabled", "limit"};
    switch (outcome) {
      case 0: case 1: r.ok = true; r.device = stored_fields(*job, true); break;
      case 2: r.ok = true; r.device = stored_fields(*job, false); break;
      case 3: r.ok = true; r.device = fields_from(rest); break;
      case 4: r.ok = true; break;
      case 5: r.error = "unavailable"; break;
      case 6: r.error = kErrors[rest.empty() ? 0 : static_cast<uint8_t>(rest[0]) % 4]; break;
      case 7: r.error = std::string(rest); break;
    }
    size_t before = g.effects.published.size(), logs_before = g.log.lines.size();
    g.gate.on_result(r);
    size_t sent = g.effects.published.size() - before;
    // A reply is withheld, with a log line, when the connection that asked is gone or its client id is now
    // someone else's (KRT devices may share one): that reply would reach the wrong device.
    bool withheld = false;
    for (size_t i = logs_before; i < g.log.lines.size(); ++i)
      if (g.log.lines[i].find("not sent: client") != std::string::npos) withheld = true;
    answered.insert(token);
    last_answered = token;
    bool from_request = request_payload.count(token) > 0;
    if (from_request)
      FUZZ_CHECK("request-result-no-reply", sent == 1 || (sent == 0 && withheld),
                 "the store result of a request sent " + std::to_string(sent) + " replies (outcome " +
                     std::to_string(outcome) + ")");
    else
      FUZZ_CHECK("rekey-result-replies", sent <= 1, "the result of a rekey sent " + std::to_string(sent) + " messages");
    after_op(token);
  }

  void stray_result(std::string_view payload) {
    uint64_t token = last_answered;
    if (!payload.empty()) {
      token = 0;
      for (char c : payload.substr(0, 19))
        if (c >= '0' && c <= '9') token = token * 10 + static_cast<uint64_t>(c - '0');
    }
    for (uint64_t p : pending)
      if (p == token) return;  // not stray
    size_t before = g.effects.published.size();
    g.gate.on_result(StoreResult{token, true, "", Fields{{"secret", fuzz::kSecret}}});
    FUZZ_CHECK("stray-result-published", g.effects.published.size() == before,
               "a result for token " + std::to_string(token) + ", not pending, sent a message");
    after_op();
  }

  void update(bool product, std::string_view payload) {
    if (payload.empty()) return;
    const SessionSpec& spec = sessions()[static_cast<uint8_t>(payload[0]) % sessions().size()];
    const Identity* id = g.gate.session(spec.cid);
    if (!id || id->kind == SessionKind::account) return;
    EntityUpdate u;
    u.kind = product ? EntityUpdate::Kind::product : EntityUpdate::Kind::device;
    u.id = product ? id->product : id->product + ":" + id->device;
    if (payload.size() > 1) u.fields = fields_from(payload.substr(1));
    g.gate.on_update(u);
    after_op();
  }

  void disconnect(std::string_view payload) {
    if (payload.empty()) return;
    const SessionSpec& spec = sessions()[static_cast<uint8_t>(payload[0]) % sessions().size()];
    auto h = handles.find(spec.cid);
    if (h == handles.end()) return;
    g.gate.on_disconnect(spec.cid, h->second);
    after_op();
  }

  void task_update(std::string_view payload) {
    if (payload.empty()) return;
    EntityUpdate u;
    u.kind = EntityUpdate::Kind::task;
    u.id = kTasks[static_cast<uint8_t>(payload[0]) % (sizeof kTasks / sizeof kTasks[0])];
    if (payload.size() > 1) u.fields = fields_from(payload.substr(1));
    g.gate.on_update(u);
    after_op();
  }

  void command(std::string_view payload) {
    Command c;
    c.fields = fields_from(payload);
    g.gate.on_command(c);
    after_op();
  }

  void tick(std::string_view payload) {
    int64_t step = payload.empty() ? 1 : static_cast<uint8_t>(payload[0]) * 37;
    if (payload.size() > 1 && (payload[1] & 1)) step *= 1000;
    g.now += step;
    g.gate.tick();
    after_op();
  }

  void message(const Route& r, std::string_view payload) {
    current_payload = std::string(payload);
    if (r.encrypt) {
      const Identity* id = g.gate.session(sessions()[r.session].cid);
      const Device* d = id ? g.gate.registry().device(id->product, id->device) : nullptr;
      auto key = from_hex(d && !d->session_key().empty() ? d->session_key() : std::string_view(fuzz::kSessionKeyLE2));
      if (!key || key->size() != 16) key = from_hex(fuzz::kSessionKeyLE2);
      bool report = std::string_view(r.topic) == "firmware_report";
      current_payload = "{\"MessageId\":" + std::to_string(++message_seq) + ",\"HeaderCtrl\":" + (report ? "8" : "9") +
                        ",\"Payload\":\"" + to_hex_upper(aes128_ecb_encrypt(*key, payload)) + "\",\"Version\":\"2.0\"}";
      payload = current_payload;
    }
    inputs += current_payload;
    inputs += '\n';
    if (!fuzz::valid_utf8(payload)) inputs_utf8 = false;
    in_message = true;
    const std::string& cid = sessions()[r.session].cid;
    auto h = handles.find(cid);
    if (h == handles.end()) g.gate.on_publish(cid.c_str(), nullptr, nullptr, topic_of(r), payload);
    else g.gate.on_publish(cid.c_str(), h->second, users[cid].c_str(), topic_of(r), payload);
    after_op();
    in_message = false;
  }

  // The id a reply must echo: the request's member as it came (number or string), else null.
  static bool same_id(const rapidjson::Value& reply, const rapidjson::Value* request) {
    if (!request || !(request->IsNumber() || request->IsString())) return reply.IsNull();
    if (request->IsString())
      return reply.IsString() && std::string_view(reply.GetString(), reply.GetStringLength()) ==
                                     std::string_view(request->GetString(), request->GetStringLength());
    if (!reply.IsNumber()) return false;
    if (request->IsInt64() && reply.IsInt64()) return request->GetInt64() == reply.GetInt64();
    if (request->IsUint64() && reply.IsUint64()) return request->GetUint64() == reply.GetUint64();
    double a = request->GetDouble(), b = reply.GetDouble();
    return a == b || std::fabs(a - b) <= 1e-12 * std::fmax(std::fabs(a), std::fabs(b));
  }

  bool input_has(std::string_view s) const { return fuzz::contains(inputs, s); }

  void scan(const rapidjson::Value& v, const std::string& key, const fuzz::Published& m, const std::string& topic_product, const std::string& topic_device, bool type2) {
    if (v.IsObject()) {
      std::set<std::string> keys;
      for (const auto& member : v.GetObject()) {
        std::string k(member.name.GetString(), member.name.GetStringLength());
        FUZZ_CHECK("reply-duplicate-key", keys.insert(k).second,
                   "duplicate key '" + fuzz::printable(k) + "' in reply " + fuzz::printable(m.payload));
        for (const auto& s : secrets)
          FUZZ_CHECK("secret-leak", !fuzz::contains(k, s), "a secret in a key of reply " + fuzz::printable(m.payload));
        scan(member.value, k, m, topic_product, topic_device, type2);
      }
    } else if (v.IsArray()) {
      for (const auto& e : v.GetArray()) scan(e, key, m, topic_product, topic_device, type2);
    } else if (v.IsString()) {
      std::string s(v.GetString(), v.GetStringLength());
      if (kEchoKeys.count(key)) return;  // checked against the request instead
      if (kSecretKeys.count(key)) {
        FUZZ_CHECK("type2-secret-sent", !type2,
                   "an auth type 2 device was sent its DeviceSecret: " + fuzz::printable(m.payload));
        const Device* d = g.gate.registry().device(topic_product, topic_device);
        FUZZ_CHECK("reply-secret-not-stored", d && d->secret == s,
                   "the DeviceSecret sent is not the stored one of " + topic_product + "/" + topic_device + ": " +
                       fuzz::printable(m.payload));
        return;
      }
      for (const auto& secret : secrets)
        FUZZ_CHECK("secret-leak", !fuzz::contains(s, secret) || input_has(secret),
                   "a secret in field '" + key + "' of reply " + fuzz::printable(m.payload));
    }
  }

  void check_reply(const fuzz::Published& m, uint64_t token) {
    rapidjson::Document doc;
    doc.Parse(m.payload.data(), m.payload.size());
    FUZZ_CHECK("reply-not-json", !doc.HasParseError() && doc.IsObject(),
               std::string("reply is not a JSON object (") + rapidjson::GetParseError_En(doc.GetParseError()) +
                   "): " + fuzz::printable(m.payload) + " on " + fuzz::printable(m.topic));
    if (inputs_utf8) FUZZ_CHECK("reply-not-utf8", fuzz::valid_utf8(m.payload), "reply is not UTF-8: " + fuzz::printable(m.payload));
    // The credential exchanges' replies (auth 1, session key 3, KRT registration CMD 20) go at QoS 0, so that no
    // durable session keeps one for a later holder of the client id; everything else at QoS 1.
    bool exchange = false;
    if (!doc.HasParseError() && doc.IsObject()) {
      auto hc = doc.FindMember("HeaderCtrl");
      auto cmd = doc.FindMember("CMD");
      exchange = (hc != doc.MemberEnd() && hc->value.IsInt() && (hc->value.GetInt() == 1 || hc->value.GetInt() == 3)) ||
                 (cmd != doc.MemberEnd() && cmd->value.IsInt() && cmd->value.GetInt() == 20);
    }
    FUZZ_CHECK("reply-qos", m.qos == (exchange ? 0 : 1), "reply with QoS " + std::to_string(m.qos) + ": " +
                                                              fuzz::printable(m.payload));
    // mosquitto routes a direct publish by client id only at its next loop iteration: one sent from a message
    // callback reaches whichever connection takes the id over meanwhile. Secrets go out from the tick.
    bool carries_key = fuzz::contains(m.payload, "\"DeviceSecret\"") || fuzz::contains(m.payload, "\"DEVICE_SECRET\"") ||
                       fuzz::contains(m.payload, "\"SessionID\"");
    FUZZ_CHECK("secret-sent-from-a-message-callback", !(carries_key && in_message),
               "a secret or session key sent while handling a message: " + fuzz::printable(m.payload));

    // The device the reply is about, from its topic: /sys/O/P/E/... (lierda) or /sys/P/D/thing/... (krt).
    std::vector<std::string> levels;
    for (size_t start = 0;;) {
      size_t slash = m.topic.find('/', start);
      levels.push_back(m.topic.substr(start, slash == std::string::npos ? std::string::npos : slash - start));
      if (slash == std::string::npos) break;
      start = slash + 1;
    }
    // (lierda: levels = "", sys, O, P, E, ...; krt: "", sys, P, D, thing, ...)
    std::string tp, td;
    if (levels.size() >= 5 && levels[4] == "thing") tp = levels[2], td = levels[3];
    else if (levels.size() >= 5) tp = levels[3], td = levels[4];

    const Identity* receiver = g.gate.session(m.client_id);
    if (receiver && (receiver->product != tp || receiver->device != td)) {
      FUZZ_CHECK("reply-to-other-device", false,
                 "a reply about " + tp + "/" + td + " went to client '" + m.client_id + "', now the session of " +
                     receiver->product + "/" + receiver->device + " (" + to_string(receiver->kind) +
                     "): " + fuzz::printable(m.payload));
    } else if (receiver) {
      // Direct publishes pass no ACL: the topic is one the session may subscribe to (an AUTH session reads nothing).
      FUZZ_CHECK("reply-topic-not-its-own", device_session_allows(*receiver, Access::subscribe, m.topic),
                 "a reply on '" + m.topic + "' which client '" + m.client_id + "' (" + to_string(receiver->kind) +
                     ") may not subscribe to");
    }
    const Product* p = g.gate.registry().product(tp);
    bool type2 = p && p->protocol == Protocol::lierda && p->auth_type == 2;
    // Only the device itself (its V2 session, proven by its DeviceSecret) learns its session key: any ProductKey
    // holder can open an AUTH session for any NodeEui of a type 2 product.
    if (receiver && receiver->kind == SessionKind::lierda_auth)
      FUZZ_CHECK("type2-session-key-to-auth-session", !(type2 && fuzz::contains(m.payload, "SessionID")),
                 "an AUTH session of a type 2 product was sent a session key: " + fuzz::printable(m.payload));
    if (!doc.HasParseError() && doc.IsObject()) {
      scan(doc, "", m, tp, td, type2);
      // The echo of MessageId / ID: replies of the request's own HeaderCtrl (auth 1, firmware report 8) and of
      // KRT registration (CMD 20). Notifications (HeaderCtrl 3, 9, 13; KRT CMD 11) carry ids of their own.
      auto hc = doc.FindMember("HeaderCtrl");
      auto cmd = doc.FindMember("CMD");
      bool echo = (hc != doc.MemberEnd() && hc->value.IsInt() && (hc->value.GetInt() == 1 || hc->value.GetInt() == 8)) ||
                  (cmd != doc.MemberEnd() && cmd->value.IsInt() && cmd->value.GetInt() == 20);
      auto req_it = request_payload.find(token);
      const std::string* req = token ? (req_it == request_payload.end() ? nullptr : &req_it->second)
                                     : (in_message ? &current_payload : nullptr);
      if (echo && req) {
        rapidjson::Document rq;
        rq.Parse<kLenient>(req->data(), req->size());
        const char* key = doc.HasMember("MessageId") ? "MessageId" : "ID";
        const rapidjson::Value* want = nullptr;
        if (!rq.HasParseError() && rq.IsObject() && rq.HasMember(key)) want = &rq[key];
        FUZZ_CHECK("reply-echo", doc.HasMember(key) && same_id(doc[key], want),
                   std::string("reply does not echo the request's ") + key + ": request " + fuzz::printable(*req) +
                       " reply " + fuzz::printable(m.payload));
      }
      // An encrypted device's Payload (a string) decrypts under its session key to a JSON object.
      auto body = doc.FindMember("Payload");
      const Device* d = g.gate.registry().device(tp, td);
      if (p && p->encrypted && d && !d->session_key().empty() && body != doc.MemberEnd() && body->value.IsString()) {
        auto cipher = from_hex(std::string_view(body->value.GetString(), body->value.GetStringLength()));
        auto key = from_hex(d->session_key());
        std::optional<std::string> plain;
        if (cipher && key) plain = aes128_ecb_decrypt(*key, *cipher);
        rapidjson::Document inner;
        if (plain) inner.Parse(plain->data(), plain->size());
        FUZZ_CHECK("encrypted-reply-garbled", plain && !inner.HasParseError() && inner.IsObject(),
                   "encrypted Payload of " + fuzz::printable(m.payload) + " does not decrypt to a JSON object");
        if (plain)
          for (const auto& secret : secrets)
            FUZZ_CHECK("secret-leak", !fuzz::contains(*plain, secret) || input_has(secret),
                       "a secret in the encrypted Payload " + fuzz::printable(*plain));
      }
    }
  }

  void check_broadcast(const fuzz::Published& m) {
    FUZZ_CHECK("broadcast-topic", is_valid_topic(m.topic), "fan-out publish on an invalid topic " + fuzz::printable(m.topic));
    for (const auto& secret : secrets)
      FUZZ_CHECK("secret-leak", !fuzz::contains(m.payload, secret) || input_has(secret),
                 "a secret in a fan-out publish on " + fuzz::printable(m.topic));
  }

  void after_op(uint64_t token = 0) {
    auto& fx = g.effects;
    for (; seen_jobs < fx.jobs.size(); ++seen_jobs) {
      const StoreJob& j = fx.jobs[seen_jobs];
      if (!j.candidate_secret.empty()) secrets.push_back(j.candidate_secret);
      if (auto k = j.fields.find("session_key"); k != j.fields.end()) secrets.push_back(k->second);
      if (j.token == 0) continue;
      FUZZ_CHECK("token-reused", !answered.count(j.token), "a new job reuses token " + std::to_string(j.token));
      pending.push_back(j.token);
      if (in_message) request_payload[j.token] = current_payload;
    }
    for (; seen_published < fx.published.size(); ++seen_published) check_reply(fx.published[seen_published], token);
    for (; seen_broadcasts < fx.broadcasts.size(); ++seen_broadcasts) check_broadcast(fx.broadcasts[seen_broadcasts]);
    for (; seen_logs < g.log.lines.size(); ++seen_logs) {
      const std::string& line = g.log.lines[seen_logs];
      for (const auto& s : secrets)
        FUZZ_CHECK("secret-logged", !fuzz::contains(line, s) || input_has(s), "a secret was logged: " + fuzz::printable(line));
    }
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Harness h;
  h.inputs.assign(reinterpret_cast<const char*>(data), size);  // a secret the input carries may come back
  for (size_t i = 0; i < sessions().size(); ++i) {
    const SessionSpec& s = sessions()[i];
    if (!h.login(s)) fuzz::fail("harness-login", __FILE__, __LINE__, std::string("fixture login refused: ") + s.cid);
    h.prefixes[static_cast<int>(i)] = h.g.gate.session(s.cid)->prefix;
  }
  std::string_view in(reinterpret_cast<const char*>(data), size);
  size_t ops = 0;
  while (!in.empty() && ops < 64) {
    size_t z = in.find('\0');
    std::string_view rec = in.substr(0, z);
    in = z == std::string_view::npos ? std::string_view() : in.substr(z + 1);
    if (rec.empty()) continue;
    ++ops;
    int op = static_cast<uint8_t>(static_cast<uint8_t>(rec[0]) - 'a') % kOps;
    std::string_view payload = rec.substr(1);
    if (op < kT) h.message(kTable[op], payload);
    else if (op == kResult) h.resolve(payload);
    else if (op == kStrayResult) h.stray_result(payload);
    else if (op == kDeviceUpdate) h.update(false, payload);
    else if (op == kProductUpdate) h.update(true, payload);
    else if (op == kDisconnect) h.disconnect(payload);
    else if (op == kLogin && !payload.empty())
      h.login(extra_logins()[static_cast<uint8_t>(payload[0]) % extra_logins().size()]);
    else if (op == kTaskUpdate) h.task_update(payload);
    else if (op == kCommand) h.command(payload);
    else if (op == kTick) h.tick(payload);
  }
  return 0;
}
