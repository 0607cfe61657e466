// The broker-thread engine: decides logins and ACLs from memory, answers the platform side of the credential
// exchanges, and applies what the store process reports. Knows nothing of mosquitto; the adapter feeds it.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "iotgate/config.h"
#include "iotgate/identity.h"
#include "iotgate/log.h"
#include "iotgate/model.h"
#include "iotgate/ota.h"
#include "iotgate/session_table.h"
#include "iotgate/store.h"

namespace iotgate {

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

struct ClientInfo {
  std::string_view client_id;
  std::optional<std::string_view> username;
  std::string_view address;
  const void* handle = nullptr;  // identifies this connection (the broker's client object); never dereferenced
};

enum class Verdict { pass, drop };

class Gate {
 public:
  using Clock = std::function<int64_t()>;  // Unix seconds
  Gate(Config config, Log& log, Effects& effects, Clock clock);

  bool authenticate(const ClientInfo& client, std::optional<std::string_view> password);
  // Every message passes here: `client_id` and `username` (may be null) are the broker's NUL-terminated strings,
  // the same buffers on every call of a connection; `handle` is the connection (ClientInfo::handle), null or
  // unknown for the broker's stand-in clients; `topic` is read only as far as the decision needs.
  bool check_acl(const char* client_id, const void* handle, const char* username, Access access, TopicText topic);
  // The broker's WRITE check of a message (the same arguments as check_acl, plus the payload). A PUBLISH from a
  // connected client that passes also gets the platform's side of the exchange here (auth and registration
  // replies, OTA, report acks); `drop`: refused by the ACL or by a handler. `retain`: the message is to be
  // retained (a device's retained topics are recorded, so that deleting the device clears them).
  Verdict on_publish(const char* client_id, const void* handle, const char* username, TopicText topic,
                     std::string_view payload, bool retain = false);
  void on_disconnect(std::string_view client_id, const void* handle);
  // The broker is stopping: every open device session counts as offline now (its writes are queued).
  void on_shutdown();

  void on_snapshot(Snapshot snapshot);
  void on_update(const EntityUpdate& update);
  void on_result(const StoreResult& result);
  void on_command(const Command& command);
  // Periodic work on the broker thread (OTA timeouts); the adapter calls it on every TICK.
  void tick();

  bool loaded() const { return loaded_; }
  size_t session_count() const { return sessions_.size(); }
  const Registry& registry() const { return registry_; }
  const Identity* session(const std::string& client_id) const;
  const OtaRouter& ota() const { return ota_; }

 private:
  struct Session {
    Identity identity;
    const void* handle = nullptr;
    int64_t started_ms = 0;  // wall clock, for OTA's "reconnected since" rules
    // The registry's entries of the session (its device, its account), valid while entries_epoch equals the gate's.
    Device* device = nullptr;
    const Account* account = nullptr;
    uint64_t entries_epoch = 0;
    std::string last_report;  // OTA: the firmware report this connection last stored (see OtaRouter)
  };
  // What every message needs of a session: kept in the session table's index, so that a message reads one cache
  // line of the plugin's memory for its publisher and one for each subscriber (see SessionTable). For a device
  // session `prefix` is its topic prefix. For an account session it is the stem of one of its read rules "X/#"
  // (read_subtree_stem), so that the read check of each message it receives is mostly answered there: reading the
  // session, the account, its rules and their filters cost every delivered message up to four more cache misses
  // (docs/benchmarks.md). It is rebuilt whenever accounts change (refresh_account_summaries).
  struct SessionSummary {
    static constexpr uint8_t kLongPrefix = 0xFF;  // not in `prefix`: the session holds the prefix / the rules
    static constexpr uint8_t kAnyTopic = 0xFE;    // an account that may read every topic (superuser)
    SessionKind kind = SessionKind::account;
    uint8_t prefix_size = 0;  // or one of the two markers above
    char prefix[38] = {};
    SessionSummary() = default;
    explicit SessionSummary(const Session& s);
  };
  using Sessions = SessionTable<Session, SessionSummary>;
  // A session's kind and topic prefix, from the summary when it holds them.
  struct SessionView {
    SessionKind kind;
    std::string_view prefix;
  };
  static SessionView view_of(const Sessions::Found& found);
  // An account session's read of `topic`, from its summary alone: true when allowed; false: ask its rules.
  static bool summary_reads(const SessionSummary& summary, TopicText topic);
  void refresh_account_summaries();
  // Records in Redis that `topic` of the device it belongs to holds a retained message (or no longer does).
  void note_retained(const Sessions::Found& found, std::string_view topic, bool cleared);
  // The device (product, device id) whose topic prefix `topic` lies under, if it is known.
  std::optional<std::pair<std::string, std::string>> device_of_topic(std::string_view topic) const;
  bool allows(const Sessions::Found& found, const void* handle, const char* client_id, const char* username,
              Access access, TopicText topic);
  // A connection the table does not hold (see departed_): judged with its own identity or by its names.
  bool unlisted_allows(const void* handle, const char* client_id, const char* username, Access access,
                       TopicText topic);
  // The platform's side of a device session's publish that its ACL allowed; `suffix`: the topic after the prefix.
  Verdict answer_platform(const Sessions::Found& found, SessionKind kind, const char* client_id, const void* handle,
                          TopicText topic, std::string_view suffix, std::string_view payload);
  enum class PlatformHandler { none, lierda_auth, krt_register, lierda_ota, lierda_report, krt_ota, emu_result };
  // The handlers that parse and answer (all but report acks): kept out of answer_platform, which every message
  // of a device passes, so that it stays small.
  [[gnu::noinline]] Verdict run_handler(PlatformHandler handler, Session& session, const char* client_id,
                                        const void* handle, TopicText topic, std::string_view suffix,
                                        std::string_view payload);
  struct Refusal {
    const char* reason_key;
    std::string reason;
  };
  enum class PendingKind { lierda_auth, krt_register, session_rekey };
  struct Pending {
    PendingKind kind;
    std::string client_id;
    const void* handle = nullptr;  // the connection that asked: a reply goes to it only, never to a later holder
                                   // of the same client id (KRT devices may share one)
    std::string product, device;
    std::string topic;
    std::string message_id_json;  // MessageId / ID as it came, re-serialized
    bool include_secret = true;
    int64_t created = 0;
  };
  struct Resolution {
    std::optional<Identity> identity;
    Refusal refusal{"", ""};
    Device* device = nullptr;  // set by resolvers that looked the device up anyway
  };

  Resolution resolve(const ClientInfo& client, const std::optional<std::string_view>* password);
  Resolution resolve_lierda_auth(std::string_view client_id, std::string_view username,
                                 const std::optional<std::string_view>* password);
  Resolution resolve_lierda_v2(std::string_view client_id, std::string_view username,
                               const std::optional<std::string_view>* password);
  std::optional<Resolution> resolve_krt(std::string_view client_id, std::string_view username,
                                        const std::optional<std::string_view>* password);
  bool verify_hash(const std::string& cache_key, const Pbkdf2Hash& hash, std::string_view password);

  // `device`: the identity's device if the resolver already found it (saves a second lookup).
  void after_login(const ClientInfo& client, const Identity& id, Device* device);
  // Both return false for a malformed message, which is then dropped (not delivered to anyone).
  bool handle_auth_request(const std::string& client_id, const Identity& id, std::string_view payload);
  bool handle_krt_register(const std::string& client_id, const Identity& id, std::string_view payload);
  // Sends the answer to `p` if its connection still asks; `error`: why the store refused (when !ok).
  void answer(const Pending& p, bool ok, const std::string& error, const Device* device);
  void reply_auth(const Pending& p, int code, const Device* device);
  void reply_krt(const Pending& p, int code, const Device* device);
  void start_rekey(const std::string& client_id, const Identity& id, const Product& product);
  // The HeaderCtrl 3 that tells a V2 session its device's session key.
  Pending session_key_notice(const std::string& client_id, const Identity& id);
  Fields new_session_key(const Product& product);
  void touch(const std::string& product, const std::string& device, Fields fields);
  void refresh_entries(Session& s);
  Device* device_of(Session& s);
  bool account_session_allows(const Account* account, const char* client_id, const char* username, Access access,
                              TopicText topic);
  void mark_offline(const Identity& id, Device* device, int64_t now);
  void merge_device(Device incoming);
  // Kicks every session in scope that its current product / device / account no longer allows.
  void revalidate(const std::function<bool(const Identity&)>& in_scope);
  std::optional<std::string> session_invalid_reason(const Identity& id) const;
  void refuse_log(const ClientInfo& client, const Refusal& r);
  // True while the connection that made `p` still holds its client id as the same device.
  bool still_asking(const Pending& p) const;
  void ask_firmware(const std::string& product, const std::string& device);
  // The session's device key encrypts the ack of an encrypted product.
  void answer_lierda_report(const char* client_id, Session& session, std::string_view suffix,
                            std::string_view payload);
  bool names_allow(const char* client_id, const char* username, Access access, TopicText topic);
  bool identity_allows(const Identity& id, const char* client_id, const char* username, Access access,
                       TopicText topic);
  bool device_allows(SessionKind kind, std::string_view prefix, const char* client_id, Access access,
                     TopicText topic, std::string_view* suffix = nullptr);
  void log_acl_denial(std::string_view client_id, Access access, std::string_view topic, const char* who);
  // Counts a failed login from `address` with `username`; says what that banned, if anything.
  enum class Ban { none, username, address };
  Ban count_failure(const std::string& address, const std::string& username, int64_t now);
  // The ban, if any, that refuses a login from `address` with `username` now: its end and what it covers.
  std::optional<std::pair<int64_t, Ban>> ban_of(const std::string& address, const std::string& username, int64_t now) const;
  void forget_quiet_addresses(int64_t now);  // addresses whose window and ban are over

  Config config_;
  Log& log_;
  Effects& effects_;
  Clock clock_;
  Registry registry_;
  bool loaded_ = false;
  // Looked up by connection and id on every ACL check and message; no string is built per lookup.
  Sessions sessions_;
  // The device and account pointers kept in sessions stay valid until a removal or a reload raises this.
  uint64_t entries_epoch_ = 0;
  std::unordered_map<uint64_t, Pending> pending_;
  // Answers that carry a secret or a session key, sent by the next tick(). mosquitto routes a reply to a client id
  // when its next loop iteration starts, which directly follows the TICK: a reply checked there (still_asking)
  // reaches the connection that asked or nobody, while one sent from a message callback would go to whichever
  // connection took the client id over in the rest of that iteration.
  std::vector<Pending> replies_due_;
  // Connections that left in this loop iteration (a disconnect, or a takeover of their client id), with the
  // identity they had: mosquitto checks their will right after, and it must be judged with their own rights,
  // never with those of the connection now holding the id. Cleared by tick(): a will is checked in the same
  // iteration (a delayed MQTT 5 will is judged later by its names).
  std::unordered_map<const void*, Identity> departed_;
  uint64_t next_token_ = 1;
  // name -> SHA-256(hash string, password) of the last password that verified, so a reconnect skips PBKDF2.
  std::unordered_map<std::string, std::string> verified_;
  OtaRouter ota_;
  int64_t last_sweep_ = 0;
  struct FailureCount {
    int64_t window_start = 0;
    int count = 0;
    int64_t banned_until = 0;
  };
  // Failed logins are banned per (address, username) first, so that one client's failures lock out no other
  // device behind the same NAT or load balancer; the whole address only when it fails under many usernames.
  struct AddressFailures {
    FailureCount address;                 // banned_until: the whole address (spraying)
    std::vector<std::string> usernames;   // distinct usernames that failed in address.window_start's window
    std::unordered_map<std::string, FailureCount> by_username;
  };
  std::unordered_map<std::string, AddressFailures> failures_;
};

}  // namespace iotgate
