// Redis I/O. Only the plugin's own threads call RedisStore; the broker thread never waits on it.
#pragma once
#include <hiredis/hiredis.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "iotgate/config.h"
#include "iotgate/model.h"
#include "iotgate/ota/router.h"
#include "iotgate/sentinel.h"

namespace iotgate {

// A session's start or end, an activation or a heartbeat: most of the writes, batched by RedisStore::touch_many
// into a few commands (a login storm writes one batch, not one call per login), and announced to the other
// brokers on the same Redis (fleet.h).
struct Touch {
  std::string product{}, device{};  // "": no device (a service account's session, a heartbeat)
  int64_t last_online = 0;      // > 0: the device's login time (Unix seconds; the latest the broker knows)
  int64_t last_offline = 0;     // > 0: its logout time, which refuses a replayed type-1 password on every broker
  bool activated = false;       // a KRT device confirmed its registration
  std::string claim{};          // "": none; else a client id a session on this broker took, at claim_at
  int64_t claim_at = 0;         // wall-clock ms
  bool alive = false;           // a heartbeat of this broker
};

// A write the broker thread asks for. `durable` writes are kept and retried while Redis is unreachable;
// the others fail at once so a device waiting on them gets a "busy" answer instead of silence.
struct StoreJob {
  enum class Type {
    touch_device,   // `touch`
    lierda_issue,   // create the device if allowed, give it a secret if it has none, store a session key
    krt_issue,      // create the device if allowed (auto-create, within the limit), give it a secret if it has none
    ota_version,    // fields: module -> version, hw:module -> hardware, updated_at
    ota_progress,   // fields: task, progress (JSON), log_status (0/1/2), count_success (0/1), execute_time
    emu_result,     // fields: sub-device id -> result JSON (merged into what is stored)
    ota_pushed,     // fields: task, and device ids under any other name
    retained,       // fields: topic -> "1" (holds a retained message) or "0" (no longer does)
  };
  Type type = Type::touch_device;
  uint64_t token = 0;  // 0: nobody waits for the result
  bool durable = false;
  std::string product, device;
  Touch touch;                   // touch_device
  Fields fields;                 // issue: session_* fields to store; the others: see Type
  bool create = false;           // issue: create the device when it is missing
  std::string origin;            // issue: origin of a created device
  std::string candidate_secret;  // issue: secret to give a device that has none
  int64_t limit = 0;             // issue with create: most devices that devices may create (0: none)
};

struct StoreResult {
  uint64_t token = 0;
  bool ok = false;
  std::string error;  // ok=false: "unavailable", "unknown_product", "unknown_device", "disabled", "limit"
  std::optional<Fields> device;  // the device as stored after the write
};

// A change read from the stream: reload of one entity (nullopt = it is gone).
struct EntityUpdate {
  enum class Kind { product, device, account, task } kind = Kind::product;
  std::string id;  // product id, "product:device", account name, or task id
  std::optional<Fields> fields;
};

// A request from the CLI's `commands` stream (push, ask_firmware, publish).
struct Command {
  Fields fields;
};

struct Snapshot {
  std::unique_ptr<Registry> registry;
  OtaData ota;
  std::vector<std::string> problems;  // entities skipped because they are malformed
};

// One entity of a load, as Redis holds it. The store process reads them (RedisStore::load_all) and sends them to
// the broker, where a SnapshotBuilder parses them into the registry: parsed where the registry lives.
struct LoadRecord {
  enum class Kind : uint8_t {
    begin,         // a load starts: what came before is dropped
    product,       // id: product id
    device,        // id: its product, member: device id; fields with the later login/logout times merged in
    account,       // id: account name
    ota_task,      // id: task id
    ota_progress,  // id: task id; fields: device -> progress JSON
    ota_pushed,    // id: task id; fields: device -> ""
    end,           // the load is complete
  };
  Kind kind = Kind::begin;
  std::string id;
  std::string member;
  Fields fields;
};

// Builds a Snapshot from a load's records, in the order load_all sends them.
class SnapshotBuilder {
 public:
  SnapshotBuilder() { reset(); }
  // Called with each parsed device before it joins the snapshot (Gate::carry_over).
  void set_device_hook(std::function<void(Device&)> hook) { device_hook_ = std::move(hook); }
  void reset();
  void add(LoadRecord record);
  Snapshot finish();  // and starts over
 private:
  Snapshot snap_;
  std::function<void(Device&)> device_hook_;
  // Malformed entities: their devices, progress and pushes are skipped with them.
  std::set<std::string> bad_products_, bad_tasks_;
};

class RedisStore {
 public:
  // client_name: given to Redis with CLIENT SETNAME (seen in CLIENT LIST); "" for none.
  explicit RedisStore(const Config& config, std::string client_name = "");
  ~RedisStore();
  RedisStore(const RedisStore&) = delete;
  RedisStore& operator=(const RedisStore&) = delete;

  bool connected() const { return ctx_ != nullptr; }
  // Connects (AUTH, SELECT, CLIENT SETNAME); returns false and sets last_error() when it cannot. With sentinels
  // (Config::redis_sentinels) each call asks them for the primary again and checks it with ROLE, so reconnecting
  // after a lost connection or a READONLY follows a failover.
  bool connect();
  void disconnect();
  const std::string& last_error() const { return error_; }
  // Where the last successful connect() went.
  const HostPort& address() const { return at_; }
  // With sentinels, connected: whether they now name another primary (a failover that left this one running: it
  // takes writes until they demote it, seconds later). false without sentinels, or when they cannot be asked.
  bool primary_moved();

  // Last id of the changes stream ("0-0" when empty); nullopt on failure.
  std::optional<std::string> last_change_id();
  // Reads every product, device, account and OTA task, passing each to `sink` between a begin and an end record;
  // false when Redis failed on the way (the records sent stop short of the end).
  bool load_all(const std::function<void(LoadRecord)>& sink);
  // Last id of the commands stream ("0-0" when empty); nullopt on failure.
  std::optional<std::string> last_command_id();
  // Whether `stream` still holds the entry `id` ("0-0": whether it is still empty): then no entry after it has been
  // trimmed. nullopt on failure.
  std::optional<bool> stream_holds(const std::string& stream, const std::string& id);
  // Blocks up to block_ms for changes after `after` and commands after `commands_after`; advances both.
  // nullopt on failure.
  std::optional<std::vector<EntityUpdate>> read_changes(std::string& after, std::string& commands_after, int block_ms,
                                                         std::vector<Command>& commands);
  std::optional<Fields> hgetall(const std::string& key, bool& ok);

  // Runs a job; ok=false with error "unavailable" when Redis failed (the connection is then dropped).
  StoreResult run(const StoreJob& job);
  // Runs many touch_device jobs in a few calls: one HSET per times hash, one script for activations, one fleet
  // announcement (fleet.h) when Config::broker_id is set.
  StoreResult touch_many(const std::vector<StoreJob>& jobs);

  std::string key(std::string_view suffix) const { return config_.key_prefix + std::string(suffix); }

 private:
  using Reply = std::unique_ptr<redisReply, decltype(&freeReplyObject)>;
  Reply command(const std::vector<std::string>& argv);
  // The same over views (touch_many's arguments point into its jobs: no copy per login).
  Reply command_of_views(const std::vector<std::string_view>& argv);
  std::optional<std::vector<std::string>> smembers(const std::string& key);
  std::optional<std::string> last_stream_id(const std::string& stream);
  bool load_ota(const std::function<void(LoadRecord)>& sink);
  // Reads the devices `ids` of `product` with their login and logout times and passes each to `sink`.
  bool load_devices(const std::string& product, const std::vector<std::string>& ids,
                    const std::function<void(LoadRecord)>& sink);
  std::optional<std::vector<std::optional<Fields>>> hgetall_many(const std::vector<std::string>& keys);
  void fail(const std::string& what);
  // Whether a commands stream entry's fields are an announcement this broker made (kind fleet or ota_progress with
  // its broker id), which it applied when it made it.
  bool own_announcement(const redisReply* fields) const;
  bool connect_to(const HostPort& at);

  Config config_;
  std::string client_name_;
  std::optional<SentinelResolver> sentinel_;
  HostPort at_;
  redisContext* ctx_ = nullptr;
  std::string error_;
};

}  // namespace iotgate
