// OTA delivery (seed 002 tasks over Lierda, KRT and EMU topics), answered on the broker thread from memory.
#pragma once
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

  // Lierda V2 uplinks firmware_report (HeaderCtrl 8) and ota_notify_ack (HeaderCtrl 9). `device` is the session's
  // device (for the session key of encrypted products); `session_started_ms` is when this connection logged in.
  // Returns false when the message is malformed and must be dropped. `last_stored` (kept per connection by the
  // caller): the report this connection last stored; a report equal to it is not written to Redis again (devices
  // report periodically). Null: every report is written.
  bool on_lierda(const std::string& client_id, const Identity& id, const Product& product, const Device& device,
                 std::string_view suffix, std::string_view payload, int64_t session_started_ms,
                 std::string* last_stored = nullptr);
  // KRT thing/ota/post: CMD 10 version report, CMD 11 ack.
  bool on_krt(const std::string& client_id, const Identity& id, std::string_view payload, int64_t session_started_ms,
              std::string* last_stored = nullptr);
  // EMU ota/<name>/result.
  bool on_emu(const std::string& client_id, const Identity& id, std::string_view name, std::string_view payload);

  // Manual push (iotgate task push): `devices` empty = every device in scope. Returns the devices marked.
  std::vector<std::string> push(const std::string& task_id, const std::vector<std::string>& devices);
  bool is_pushed(const std::string& task_id, const std::string& device) const;

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
  // Returns the notification to send (if any) after a report, and records success / failure.
  void handle_report(const std::string& client_id, const Identity& id, const FirmwareReport& report,
                     int64_t session_started_ms, std::string* last_stored,
                     const std::function<void(const OtaTask&, const std::string& down_id)>& notify);
  void handle_ack(const Identity& id, std::string_view down_id);
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
  uint64_t down_seq_ = 0;
  int64_t message_seq_ = 0;
};

}  // namespace iotgate
