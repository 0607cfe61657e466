// OTA delivery of seed 002 tasks, answered on the broker thread from memory. Protocol-free: the modules parse their
// wire formats into FirmwareReport and DownIDs and render the notifications.
#pragma once
#include <algorithm>
#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "iotgate/config.h"
#include "iotgate/identity.h"
#include "iotgate/log.h"
#include "iotgate/metrics.h"
#include "iotgate/model.h"

namespace iotgate {

class Effects;

struct OtaTask {
  std::string id, product, name, type, identify;
  std::string from_version, target_version, target_url, target_md5;
  int64_t target_size = 0;
  int status = 0;  // 0 stopped, 1 running, 2 waiting, 3 in review
  int task_type = 0;  // 0 automatic, 1 manual
  int scope_category = 0;  // 0 all devices, 1 listed
  int tag_type = 0;  // 0 production, 1 test
  std::unordered_set<std::string> device_list;
  int64_t rate_limit = 0;  // notifications per minute, 0 = none
  int gray_percent = 100;
  int64_t ack_timeout = 600;
  int64_t upgrade_timeout = 86400;
};
std::optional<OtaTask> ota_task_from_fields(const std::string& id, const Fields& f, std::string* error);

enum class OtaState { notified, acked, succeeded, failed, timed_out };
const char* to_string(OtaState s);
struct OtaProgress {
  OtaState state = OtaState::notified;
  std::string down_id;
  int64_t notified_at = 0, acked_at = 0, finished_at = 0;  // Unix seconds, stored
  std::string reported;
  int64_t notified_ms = 0, acked_ms = 0;  // wall-clock ms, memory only (notified_at / acked_at * 1000 after a load)
};
// Wall-clock milliseconds: when sessions started and progress moved, compared with each other.
int64_t wall_ms();
std::optional<OtaProgress> ota_progress_from_json(std::string_view json);
std::string to_json(const OtaProgress& p);

// FNV-1a 32-bit of the device id, mod 100: the device is in a gray rollout of P percent when this is below P.
int gray_bucket(std::string_view device);

// What the store loads for OTA, next to the registry.
struct OtaData {
  std::vector<OtaTask> tasks;
  std::unordered_map<std::string, std::unordered_map<std::string, OtaProgress>> progress;  // task -> device -> progress
  std::unordered_map<std::string, std::unordered_set<std::string>> pushed;  // manual task -> devices pushed ("*" = all)
};

// A device's report, whichever protocol carried it.
struct FirmwareReport {
  std::string module;  // "default" when the report names none
  std::string version;
  std::string hardware;
};

class OtaRouter {
 public:
  using Clock = std::function<int64_t()>;
  OtaRouter(const Config& config, Log& log, Effects& effects, Clock clock);

  void load(OtaData data);
  void on_task(const std::string& id, const std::optional<Fields>& fields);

  // What a module sends when a report starts an upgrade: the task and the DownID that the device's ack names.
  using Notify = std::function<void(const OtaTask& task, const std::string& down_id)>;
  // A device's firmware report: stores the version, records success or failure of the task in flight, or starts the
  // matching task (`notify`) when the device is in its scope, gray percentage and rate limit.
  // `session_started_ms`: when this connection logged in. `last_stored` (kept per connection by the caller): the
  // report this connection last stored; a report equal to it is not written to Redis again (devices report
  // periodically). Null: every report is written.
  void on_report(const Identity& id, const FirmwareReport& report, int64_t session_started_ms,
                 std::string* last_stored, const Notify& notify);
  // The device's ack of the notification that carried `down_id`.
  void on_ack(const Identity& id, std::string_view down_id);

  // Manual push (iotgate task push): `devices` empty = every device in scope. Returns the devices marked.
  std::vector<std::string> push(const std::string& task_id, const std::vector<std::string>& devices);
  bool is_pushed(const std::string& task_id, const std::string& device) const;

  // A device's progress as another broker on the same Redis recorded it (or as Redis kept it when this broker's
  // write came too late): known here from now on, not written again.
  void on_progress_elsewhere(const std::string& task_id, const std::string& device, std::string_view json);
  // Names this broker in the progress it writes (whose announcements it then skips).
  void set_broker_id(std::string id) { broker_id_ = std::move(id); }
  // How many brokers share this Redis now (this one included): each notifies at most 1/N of a task's rate limit, so
  // that the fleet together keeps it.
  void set_fleet_size(size_t brokers) { fleet_size_ = std::max<size_t>(brokers, 1); }
  // Adds iotgate_ota_events_total: the progress steps this broker recorded, by task and event.
  void metrics(MetricSamples& out) const;

  // Moves notified / acked devices past their task's timeouts to timed_out. Call about once a second.
  void sweep_timeouts();

  const OtaTask* task(const std::string& id) const;
  const OtaProgress* progress(const std::string& task_id, const std::string& device) const;

 private:
  struct Bucket {
    double tokens = 0;
    int64_t last_ms = 0;
    bool primed = false;
  };
  bool in_scope(const OtaTask& t, const std::string& device) const;
  bool take_token(const OtaTask& t);
  void set_progress(const OtaTask& t, const std::string& device, OtaProgress p, int log_status, bool count_success);
  std::string next_down_id(const OtaTask& t);

  Config config_;
  Log& log_;
  Effects& effects_;
  Clock clock_;
  std::unordered_map<std::string, OtaTask> tasks_;
  std::unordered_map<std::string, std::unordered_map<std::string, OtaProgress>> progress_;
  std::unordered_map<std::string, std::unordered_set<std::string>> pushed_;
  std::unordered_map<std::string, Bucket> buckets_;
  size_t fleet_size_ = 1;
  std::string broker_id_;
  static constexpr size_t kOtaStates = static_cast<size_t>(OtaState::timed_out) + 1;
  std::unordered_map<std::string, std::array<uint64_t, kOtaStates>> events_;  // task -> steps recorded, by state
};

}  // namespace iotgate
