// The broker-thread engine: decides logins and ACLs from memory and applies what the store process reports. It
// keeps what every protocol shares (the session table, the registry, bans, replies waiting for the store) and
// dispatches the rest to the protocol modules (protocol.h). Knows nothing of mosquitto; the adapter feeds it.
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "iotgate/accounts/accounts.h"
#include "iotgate/config.h"
#include "iotgate/emu/emu.h"
#include "iotgate/identity.h"
#include "iotgate/krt/krt.h"
#include "iotgate/lierda/lierda.h"
#include "iotgate/log.h"
#include "iotgate/login_bans.h"
#include "iotgate/metrics.h"
#include "iotgate/model.h"
#include "iotgate/ota/router.h"
#include "iotgate/protocol.h"
#include "iotgate/session_table.h"
#include "iotgate/store.h"

namespace iotgate {

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

  // A device of a load being parsed, before it joins the snapshot (StoreProcess's device hook): it takes the
  // login/logout times and activation this broker holds, which may be ahead of what the load read from Redis (writes
  // not made yet). Spares on_snapshot a pass over every device in one TICK (about a second at a million).
  void carry_over(Device& incoming);
  // A completed load replaces the registry; devices changed since carry_over saw them are carried over here.
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
  // This broker among those sharing the Redis (random, made at start).
  const std::string& broker_id() const { return broker_id_; }
  // The counters of the metrics page (metrics.h), as of `now` (Unix seconds).
  MetricSamples metrics(int64_t now) const;

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
    int64_t taken_over_at = 0;  // Unix seconds: a newer session of the client id began on another broker
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
  // The module's handler of a message that it parses and answers: kept out of answer_platform, which every
  // message of a device passes, so that it stays small.
  [[gnu::noinline]] Verdict run_handler(ProtocolModule& module, Session& session, const char* client_id,
                                        const void* handle, TopicText topic, std::string_view suffix,
                                        std::string_view payload);
  ProtocolModule& module_of(Protocol protocol) const;
  ProtocolModule* module_of(SessionKind kind) const;  // null: an account session
  // DevicePublish::device_lookup: the device of a session (context: a pair of the gate and the session).
  static Device* device_of_session(void* gate_and_session);

  Resolution resolve(const ClientInfo& client, PasswordArg password);
  // `device`: the identity's device if the resolver already found it (saves a second lookup).
  void after_login(const ClientInfo& client, const Identity& id, Device* device);
  // Sends `reply` through its module if its connection still asks; `error`: why the store refused (when !ok).
  void answer(const PendingReply& reply, bool ok, const std::string& error, const Device* device);
  // True while the connection that made `reply` still holds its client id as the same device.
  bool still_asking(const PendingReply& reply) const;
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
  // Asks every connected session of the device to report its firmware now (the protocols that can ask).
  void ask_firmware(const std::string& product, const std::string& device);
  bool names_allow(const char* client_id, const char* username, Access access, TopicText topic);
  bool identity_allows(const Identity& id, const char* client_id, const char* username, Access access,
                       TopicText topic);
  bool device_allows(SessionKind kind, std::string_view prefix, const char* client_id, Access access,
                     TopicText topic, std::string_view* suffix = nullptr);
  void log_acl_denial(std::string_view client_id, Access access, std::string_view topic, const char* who);
  void on_fleet_event(const Fields& fields);
  // Says on the commands stream that this broker is alive (every kHeartbeat), and counts the brokers heard from
  // lately: fleet-wide OTA rate limits are shared among them (OtaRouter::set_fleet_size).
  void heartbeat(int64_t now);
  static constexpr int64_t kHeartbeat = 10;       // seconds
  static constexpr int64_t kBrokerSilence = 35;   // seconds without a word after which a broker counts as gone

  // Counted for the metrics page only where a login, a refusal, a ban or a denial happens: an allowed message
  // passes no counter.
  static constexpr size_t kSessionKinds = static_cast<size_t>(SessionKind::account) + 1;
  struct Counters {
    std::array<uint64_t, kSessionKinds> accepted{};
    std::array<uint64_t, kSessionKinds> sessions{};  // held now
    std::map<std::pair<std::string, std::string>, uint64_t> refused;  // (protocol, reason key)
    std::array<uint64_t, 4> acl_denied{};  // by Access
    uint64_t bans_username = 0, bans_address = 0;
  };
  void count_refusal(const char* protocol, const Refusal& r) { ++counters_.refused[{protocol, r.reason_key}]; }
  [[gnu::noinline]] void count_denial(Access access) { ++counters_.acl_denied[static_cast<size_t>(access)]; }
  void count_session(SessionKind kind, int delta) { counters_.sessions[static_cast<size_t>(kind)] += delta; }

  Config config_;
  Log& log_;
  Effects& effects_;
  Counters counters_;
  Clock clock_;
  Registry registry_;
  // The registry the last load replaced, freed a part per TICK (Registry::dispose_some).
  std::unique_ptr<Registry> retired_;
  std::string broker_id_ = config_.broker_id.empty() ? random_hex(8) : config_.broker_id;
  bool loaded_ = false;
  // Looked up by connection and id on every ACL check and message; no string is built per lookup.
  Sessions sessions_;
  // The device and account pointers kept in sessions stay valid until a removal or a reload raises this.
  uint64_t entries_epoch_ = 0;
  PendingReplies replies_;
  // Connections that left in this loop iteration (a disconnect, or a takeover of their client id), with the
  // identity they had: mosquitto checks their will right after, and it must be judged with their own rights,
  // never with those of the connection now holding the id. Cleared by tick(): a will is checked in the same
  // iteration (a delayed MQTT 5 will is judged later by its names).
  std::unordered_map<const void*, Identity> departed_;
  VerifiedPasswords passwords_;
  LoadChanges load_changes_;
  OtaRouter ota_;
  int64_t last_sweep_ = 0;
  int64_t last_heartbeat_ = 0;
  std::unordered_map<std::string, int64_t> brokers_heard_;  // other brokers -> when they last said something
  LoginBans bans_;
  GateContext context_;
  LierdaModule lierda_;
  KrtModule krt_;
  EmuModule emu_;
  AccountsModule accounts_;
  // The order logins are resolved in: each module claims the names that are its own.
  LoginResolver* const resolvers_[4] = {&lierda_, &krt_, &accounts_, &emu_};
  ProtocolModule* const modules_[3] = {&lierda_, &krt_, &emu_};  // by Protocol (module_of)
};

}  // namespace iotgate
