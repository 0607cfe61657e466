// The one interface between the gate and the protocol modules (lierda/, krt/, emu/, accounts/). The gate keeps
// what every protocol shares: the session table, the registry, bans, the replies that wait for the store, and
// applying what the store reports. A module owns everything its protocol means: its identifiers, how its logins
// resolve, the shape of its ACL (device_session_allows dispatches to it), the platform's answers and its OTA wire
// format. Everything here runs on the broker thread.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "iotgate/config.h"
#include "iotgate/crypto.h"
#include "iotgate/identity.h"
#include "iotgate/log.h"
#include "iotgate/model.h"
#include "iotgate/store.h"
#include "iotgate/topic.h"

namespace iotgate {

class OtaRouter;

// What the gate asks of the broker and of the store process. Called on the broker thread only.
class Effects {
 public:
  virtual ~Effects() = default;
  // Sends a message to one client only, whatever it subscribed to (mosquitto_broker_publish with a client id).
  virtual void publish_to_client(const std::string& client_id, const std::string& topic, const std::string& payload,
                                 int qos) = 0;
  // Normal fan-out to the subscribers of `topic` (each READ-checked), not retained.
  virtual void publish(const std::string& topic, const std::string& payload, int qos) = 0;
  // Deletes the retained message of `topic` (a zero-length retained publish, which its subscribers also receive).
  virtual void clear_retained(const std::string& topic) = 0;
  // Disconnects a client; the adapter does it on the next tick, never inside the callback that asked.
  virtual void kick(const std::string& client_id) = 0;
  // Hands a write to the store process; its StoreResult comes back through Gate::on_result when token != 0.
  virtual void submit(StoreJob job) = 0;
};

// Why a login is refused: a short key (log rate limiting) and the reason for the log line.
struct Refusal {
  const char* reason_key;
  std::string reason;
};

// A login's outcome: the identity, or why not.
struct Resolution {
  std::optional<Identity> identity;
  Refusal refusal{"", ""};
  Device* device = nullptr;  // set by resolvers that looked the device up anyway (saves a second lookup)
  const char* claimed_by = "unknown";  // the module that claimed the login (metrics); set by the gate
};

// The password of a login. Null: resolve the identity from the names alone (the ACL checks of wills and retained
// messages of clients that are gone); otherwise it points at the password the client sent (nullopt: none), and
// every secret must match.
using PasswordArg = const std::optional<std::string_view>*;

// A reply that carries a secret or a session key, or answers a request that waits for the store. The gate sends it
// (through its module's answer()) only to the connection that asked, and only while it still holds its client id
// as the same device: never to a later holder of the id (KRT devices may share one).
struct PendingReply {
  Protocol protocol = Protocol::lierda;  // the module that renders it
  int kind = 0;                          // what it answers, in its module's terms
  std::string client_id;
  const void* handle = nullptr;  // the connection that asked
  std::string product, device;
  std::string topic;
  std::string message_id_json;  // the request's MessageId / ID as it came, re-serialized
  int64_t created = 0;

  // A reply of `protocol` to the session `id` of connection `handle`, on `topic_suffix` under its prefix.
  static PendingReply to(Protocol protocol, int kind, const std::string& client_id, const void* handle,
                         const Identity& id, std::string_view topic_suffix, int64_t now) {
    PendingReply p;
    p.protocol = protocol;
    p.kind = kind;
    p.client_id = client_id;
    p.handle = handle;
    p.product = id.product;
    p.device = id.device;
    p.topic = id.prefix + std::string(topic_suffix);
    p.message_id_json = "null";
    p.created = now;
    return p;
  }
};

// Replies waiting for the store (by the token of their StoreJob) and replies due at the next tick. mosquitto
// routes a reply to a client id when its next loop iteration starts, which directly follows the TICK: a reply
// checked there reaches the connection that asked or nobody, while one sent from a message callback would go to
// whichever connection took the client id over in the rest of that iteration.
class PendingReplies {
 public:
  // Keeps `reply` until the store answers the job that carries the returned token.
  uint64_t await(PendingReply reply) {
    uint64_t token = next_token_++;
    waiting_.emplace(token, std::move(reply));
    return token;
  }
  // Sends `reply` at the next tick.
  void due(PendingReply reply) { due_.push_back(std::move(reply)); }
  std::optional<PendingReply> take(uint64_t token) {
    auto it = waiting_.find(token);
    if (it == waiting_.end()) return std::nullopt;
    PendingReply r = std::move(it->second);
    waiting_.erase(it);
    return r;
  }
  std::vector<PendingReply> take_due() { return std::exchange(due_, {}); }

 private:
  std::unordered_map<uint64_t, PendingReply> waiting_;
  std::vector<PendingReply> due_;
  uint64_t next_token_ = 1;
};

// The hashed passwords (mosquitto_passwd's PBKDF2) of accounts and EMU gateways, with the last password of each
// that verified: a reconnect skips PBKDF2 (about a millisecond of the broker thread).
class VerifiedPasswords {
 public:
  // `name` keys the cache ("account:NAME", "emu:UID").
  bool verify(const std::string& name, const Pbkdf2Hash& hash, std::string_view password);
  void forget(const std::string& name) { verified_.erase(name); }
  // While set, only a password that verified before passes (no PBKDF2): the logins of a banned address.
  void set_cached_only(bool cached_only) { cached_only_ = cached_only; }

 private:
  std::unordered_map<std::string, std::string> verified_;  // name -> SHA-256(hash, password)
  bool cached_only_ = false;
};

// What the gate shares with its modules.
// The devices whose login/logout times or activation changed in memory while a load was being parsed
// (Gate::carry_over): the load may hold what Redis had before the change, so Gate::on_snapshot carries them over.
struct LoadChanges {
  bool loading = false;
  std::unordered_set<std::string> devices;  // device_key(product, device)
  void note(std::string_view product, std::string_view device) {
    if (loading && !product.empty()) devices.insert(device_key(product, device));
  }
};

struct GateContext {
  const Config& config;
  Log& log;
  Effects& effects;
  std::function<int64_t()> clock;  // Unix seconds
  Registry& registry;
  OtaRouter& ota;
  PendingReplies& replies;
  VerifiedPasswords& passwords;
  LoadChanges& load_changes;

  // Writes a session's start or end, or an activation, to Redis; durable: held while Redis is away.
  void touch(Touch touch) const;
};

// A device session's publish that its ACL allowed, as a module sees it.
struct DevicePublish {
  const char* client_id;  // the broker's NUL-terminated id
  const void* handle;     // the connection
  const Identity& identity;
  int64_t session_started_ms;  // when this connection logged in (wall clock)
  std::string* last_report;   // the OTA report this connection last stored (see OtaRouter::on_report)
  TopicText topic;
  std::string_view suffix;  // the topic after the session's prefix
  std::string_view payload;
  // The session's device (null: not known), looked up only when asked: most messages never need it, and the
  // lookup reads the session's memory. Valid until the module changes anything.
  Device* (*device_lookup)(void* context);
  void* device_lookup_context;
  Device* device() const { return device_lookup(device_lookup_context); }
};

// What the platform does with a publish of a device session, decided from its kind and topic on every message.
enum class Handling : uint8_t {
  deliver,      // nothing: the message goes on to its subscribers
  acknowledge,  // answered (e.g. Lierda's report acks) and delivered; oversized or opaque ones are just delivered
  handle,       // parsed and answered by the module (auth, registration, OTA); oversized or malformed: dropped
};

// Each module resolves the logins whose names are its own; the gate asks them in a fixed order.
class LoginResolver {
 public:
  virtual ~LoginResolver() = default;
  // The login if its names are this module's; nullopt when they are not (the gate asks the next module).
  virtual std::optional<Resolution> resolve(std::string_view client_id, std::string_view username,
                                            PasswordArg password) = 0;
};

// A device protocol (Lierda, KRT, EMU): what the gate dispatches to for its sessions.
class ProtocolModule : public LoginResolver {
 public:
  virtual Protocol protocol() const = 0;
  // A login of a session with a device was accepted and is in the session table. `touch` is written to Redis
  // after this, with the login time; a module may add to it.
  virtual void on_login(const std::string& client_id, const void* handle, const Identity& id, Device& device,
                        Touch& touch) {
    (void)client_id, (void)handle, (void)id, (void)device, (void)touch;
  }
  virtual Handling handling(SessionKind kind, std::string_view suffix) const = 0;
  // Handling::acknowledge. Changes no session.
  virtual void acknowledge(const DevicePublish& message) { (void)message; }
  // Handling::handle; false when the message is malformed and must be dropped. `message.identity` is a copy.
  virtual bool handle(const DevicePublish& message) {
    (void)message;
    return true;
  }
  // Renders and sends one of the module's replies; the gate has checked that its connection still asks.
  // `ok` / `error`: what the store said of the job the reply waited for (ok for replies that waited for none).
  virtual void answer(const PendingReply& reply, bool ok, const std::string& error, const Device* device) {
    (void)reply, (void)ok, (void)error, (void)device;
  }
  // Why an open session of the protocol is no longer allowed, beyond what the gate checks for all (the product
  // gone or disabled, the device disabled or deleted).
  virtual std::optional<std::string> invalid_reason(const Identity& id, const Product& product) const {
    (void)id, (void)product;
    return std::nullopt;
  }
  // The device (product, device id) whose topic prefix the topic lies under, from the topic's levels that have
  // more below them (at most five), when it is this protocol's and known.
  virtual std::optional<std::pair<std::string, std::string>> device_of_topic(
      const std::vector<std::string_view>& levels) const {
    (void)levels;
    return std::nullopt;
  }
  // Asks a connected device to report its firmware now; false when the protocol cannot.
  virtual bool ask_firmware(const std::string& client_id, const Identity& id) {
    (void)client_id, (void)id;
    return false;
  }
};

// The client ids a login by name may take: NAME, or NAME:ANYTHING (':' is in no account or device name, so no
// name's ids overlap another's).
inline bool client_id_bound_to(std::string_view client_id, std::string_view name) {
  return client_id.substr(0, name.size()) == name &&
         (client_id.size() == name.size() || client_id[name.size()] == ':');
}

}  // namespace iotgate
