// The OTA router: which task a device's report matches, gray rollouts, rate limits, progress and timeouts. It
// knows no protocol: each module parses its own wire format into FirmwareReport / a DownID and renders the
// notification (lierda/ota.cpp, krt/krt.cpp).
#include "iotgate/ota/router.h"

#include <charconv>
#include <cmath>

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "iotgate/crypto.h"
#include "iotgate/protocol.h"
#include "iotgate/ids.h"
#include "iotgate/json.h"

namespace iotgate {
namespace {


int64_t int_field(const Fields& f, const char* name, int64_t fallback) {
  auto it = f.find(name);
  int64_t v = 0;
  return it != f.end() && parse_decimal(it->second, v) ? v : fallback;
}
std::string str_field(const Fields& f, const char* name) {
  auto it = f.find(name);
  return it == f.end() ? std::string() : it->second;
}
int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
std::string execute_time(int64_t unix_seconds) {
  time_t t = static_cast<time_t>(unix_seconds);
  tm utc{};
  gmtime_r(&t, &utc);
  char buf[40];
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S.00Z", &utc);
  return buf;
}

}  // namespace

const char* to_string(OtaState s) {
  switch (s) {
    case OtaState::notified: return "notified";
    case OtaState::acked: return "acked";
    case OtaState::succeeded: return "succeeded";
    case OtaState::failed: return "failed";
    case OtaState::timed_out: return "timed_out";
  }
  return "?";
}

int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

int gray_bucket(std::string_view device) {
  uint32_t h = 2166136261u;
  for (unsigned char c : device) {
    h ^= c;
    h *= 16777619u;
  }
  return static_cast<int>(h % 100);
}

std::optional<OtaTask> ota_task_from_fields(const std::string& id, const Fields& f, std::string* error) {
  OtaTask t;
  t.id = id;
  t.product = str_field(f, "product_id");
  t.name = str_field(f, "name");
  t.type = str_field(f, "type");
  t.identify = str_field(f, "identify");
  if (t.identify.empty()) t.identify = "default";
  t.from_version = str_field(f, "from_version");
  t.target_version = str_field(f, "target_version");
  t.target_url = str_field(f, "target_version_url");
  t.target_md5 = str_field(f, "target_version_md5");
  t.target_size = int_field(f, "target_version_size", 0);
  // Out-of-range values become -1 (never running, never matching) rather than wrapping into a valid one.
  auto small = [&](const char* name, int64_t fallback, int64_t hi) {
    int64_t v = int_field(f, name, fallback);
    return v < 0 || v > hi ? -1 : static_cast<int>(v);
  };
  t.status = small("status", 0, 3);
  t.task_type = small("task_type", 0, 1);
  t.scope_category = small("scope_category", 0, 1);
  t.tag_type = small("tag_type", 0, 1);
  t.rate_limit = int_field(f, "rate_limit", 0);
  t.gray_percent = small("gray_percent", 100, 100);
  t.ack_timeout = int_field(f, "ack_timeout", 600);
  t.upgrade_timeout = int_field(f, "upgrade_timeout", 86400);
  std::string list = str_field(f, "device_list");
  if (!list.empty()) {
    rapidjson::Document d;
    d.Parse(list.c_str(), list.size());
    if (d.HasParseError() || !d.IsArray()) {
      if (error) *error = "task " + id + ": device_list is not a JSON array";
      return std::nullopt;
    }
    for (const auto& v : d.GetArray())
      if (v.IsString()) t.device_list.emplace(v.GetString(), v.GetStringLength());
  }
  if (t.product.empty() || t.target_version.empty()) {
    if (error) *error = "task " + id + ": missing product_id or target_version";
    return std::nullopt;
  }
  return t;
}

std::optional<OtaProgress> ota_progress_from_json(std::string_view json) {
  rapidjson::Document d;
  d.Parse(json.data(), json.size());
  if (d.HasParseError() || !d.IsObject()) return std::nullopt;
  auto state = d.FindMember("state");
  if (state == d.MemberEnd() || !state->value.IsString()) return std::nullopt;
  std::string_view s(state->value.GetString(), state->value.GetStringLength());
  OtaProgress p;
  if (s == "notified") p.state = OtaState::notified;
  else if (s == "acked") p.state = OtaState::acked;
  else if (s == "succeeded") p.state = OtaState::succeeded;
  else if (s == "failed") p.state = OtaState::failed;
  else if (s == "timed_out") p.state = OtaState::timed_out;
  else return std::nullopt;
  p.down_id = text_or_number(d, "down_id").value_or("");
  p.reported = text_or_number(d, "reported").value_or("");
  p.notified_at = int_member(d, "notified_at").value_or(0);
  p.acked_at = int_member(d, "acked_at").value_or(0);
  p.finished_at = int_member(d, "finished_at").value_or(0);
  p.notified_ms = p.notified_at * 1000;
  p.acked_ms = p.acked_at * 1000;
  return p;
}

std::string to_json(const OtaProgress& p) {
  return std::string("{\"state\":\"") + to_string(p.state) + "\",\"down_id\":" + json_quoted(p.down_id) +
         ",\"notified_at\":" + std::to_string(p.notified_at) + ",\"acked_at\":" + std::to_string(p.acked_at) +
         ",\"finished_at\":" + std::to_string(p.finished_at) + ",\"reported\":" + json_quoted(p.reported) + "}";
}

OtaRouter::OtaRouter(const Config& config, Log& log, Effects& effects, Clock clock)
    : config_(config), log_(log), effects_(effects), clock_(std::move(clock)) {}

void OtaRouter::load(OtaData data) {
  tasks_.clear();
  for (auto& t : data.tasks) {
    std::string id = t.id;
    tasks_[id] = std::move(t);
  }
  progress_ = std::move(data.progress);
  pushed_ = std::move(data.pushed);
}

void OtaRouter::on_task(const std::string& id, const std::optional<Fields>& fields) {
  if (!fields) {
    tasks_.erase(id);
    progress_.erase(id);
    pushed_.erase(id);
    buckets_.erase(id);
    return;
  }
  std::string err;
  if (auto t = ota_task_from_fields(id, *fields, &err)) tasks_[id] = std::move(*t);
  else log_.warning("iotgate: task change ignored: " + err);
}

void OtaRouter::on_progress_elsewhere(const std::string& task_id, const std::string& device, std::string_view json) {
  if (!tasks_.count(task_id)) return;
  auto p = ota_progress_from_json(json);
  if (!p) {
    log_.warning("iotgate: OTA progress of " + device + " in task " + task_id + " from another broker ignored: malformed");
    return;
  }
  // Its wall-clock times are the other broker's: the session rules compare them with this broker's sessions, which
  // began later when the device moved here.
  p->notified_ms = p->notified_at * 1000;
  p->acked_ms = p->acked_at * 1000;
  progress_[task_id][device] = std::move(*p);
}

const OtaTask* OtaRouter::task(const std::string& id) const {
  auto it = tasks_.find(id);
  return it == tasks_.end() ? nullptr : &it->second;
}
const OtaProgress* OtaRouter::progress(const std::string& task_id, const std::string& device) const {
  auto t = progress_.find(task_id);
  if (t == progress_.end()) return nullptr;
  auto d = t->second.find(device);
  return d == t->second.end() ? nullptr : &d->second;
}

bool OtaRouter::in_scope(const OtaTask& t, const std::string& device) const {
  // A test task only ever reaches its listed devices, whatever its scope says.
  if (t.tag_type == 1 || t.scope_category == 1) return t.device_list.count(device) > 0;
  return true;
}

bool OtaRouter::is_pushed(const std::string& task_id, const std::string& device) const {
  auto it = pushed_.find(task_id);
  return it != pushed_.end() && (it->second.count(device) || it->second.count("*"));
}

bool OtaRouter::take_token(const OtaTask& t) {
  if (t.rate_limit <= 0) return true;
  Bucket& b = buckets_[t.id];
  int64_t now = now_ms();
  // This broker's share of the fleet's rate (per minute); at least one notification fits in the bucket, so that a
  // share below one a minute still notifies, one every 1/share minutes.
  const double share = static_cast<double>(t.rate_limit) / static_cast<double>(fleet_size_);
  const double capacity = std::max(1.0, share);
  if (!b.primed) {
    b.tokens = share;
    b.primed = true;
  } else {
    b.tokens = std::min(capacity, b.tokens + static_cast<double>(now - b.last_ms) * share / 60000.0);
  }
  b.last_ms = now;
  if (b.tokens < 1.0) return false;
  b.tokens -= 1.0;
  return true;
}

std::string OtaRouter::next_down_id(const OtaTask& t) { return t.id + "-" + random_hex(4); }

void OtaRouter::set_progress(const OtaTask& t, const std::string& device, OtaProgress p, int log_status,
                             bool count_success) {
  StoreJob job;
  job.type = StoreJob::Type::ota_progress;
  job.durable = true;
  job.product = t.product;
  job.device = device;
  job.fields = {{"task", t.id},
                {"progress", to_json(p)},
                {"log_status", std::to_string(log_status)},
                {"count_success", count_success ? "1" : "0"},
                {"execute_time", execute_time(clock_())},
                {"broker", broker_id_}};
  ++events_[t.id][static_cast<size_t>(p.state)];
  progress_[t.id][device] = std::move(p);
  effects_.submit(std::move(job));
}

void OtaRouter::metrics(MetricSamples& out) const {
  for (const auto& [task, counts] : events_)
    for (size_t i = 0; i < kOtaStates; ++i)
      out[metric_key("iotgate_ota_events_total", {{"task", task}, {"event", to_string(static_cast<OtaState>(i))}})] =
          std::to_string(counts[i]);
}

void OtaRouter::on_report(const Identity& id, const FirmwareReport& report, int64_t session_started_ms,
                          std::string* last_stored, const Notify& notify) {
  int64_t now = clock_();
  std::string stored = report.module + '\n' + report.version + '\n' + report.hardware;
  if (!last_stored || *last_stored != stored) {
    StoreJob version;
    version.type = StoreJob::Type::ota_version;
    version.durable = true;
    version.product = id.product;
    version.device = id.device;
    version.fields = {{report.module, report.version}, {"updated_at", std::to_string(now)}};
    if (!report.hardware.empty()) version.fields["hw:" + report.module] = report.hardware;
    effects_.submit(std::move(version));
    if (last_stored) *last_stored = std::move(stored);
  }

  bool in_flight = false;
  for (auto& [task_id, devices] : progress_) {
    auto it = devices.find(id.device);
    if (it == devices.end()) continue;
    auto t = tasks_.find(task_id);
    if (t == tasks_.end() || t->second.product != id.product || t->second.identify != report.module) continue;
    OtaProgress p = it->second;
    if (p.state != OtaState::notified && p.state != OtaState::acked) continue;
    in_flight = true;
    if (report.version == t->second.target_version) {
      p.state = OtaState::succeeded;
      p.finished_at = now;
      p.reported = report.version;
      log_.info("iotgate: OTA task " + task_id + ": " + id.product + "/" + id.device + " reached " + report.version);
      set_progress(t->second, id.device, std::move(p), 2, true);
    } else if (p.state == OtaState::notified && report.version == t->second.from_version) {
      // Notified but never acked: notify again once the device has reconnected (a retransmitted or periodic
      // report in the same session changes nothing), while the task still runs.
      if (t->second.status == 1 && session_started_ms > p.notified_ms) {
        p.notified_at = now;
        p.notified_ms = wall_ms();
        p.down_id = next_down_id(t->second);
        std::string down_id = p.down_id;
        set_progress(t->second, id.device, std::move(p), 0, false);
        notify(t->second, down_id);
      }
    } else if ((p.state == OtaState::acked && session_started_ms > p.acked_ms) || p.state == OtaState::notified) {
      // After the ack, the first report of a new session decides; a notified device on a third version failed too.
      p.state = OtaState::failed;
      p.finished_at = now;
      p.reported = report.version;
      log_.notice("iotgate: OTA task " + task_id + ": " + id.product + "/" + id.device + " reported " + report.version +
                  " instead of " + t->second.target_version + ": failed");
      set_progress(t->second, id.device, std::move(p), 0, false);
    }
  }
  if (in_flight) return;

  for (auto& [task_id, t] : tasks_) {
    if (t.status != 1 || t.product != id.product || t.identify != report.module || t.from_version != report.version)
      continue;
    if (progress(task_id, id.device)) continue;  // done, failed or timed out before: only a manual push retries
    if (!in_scope(t, id.device)) continue;
    if (t.task_type == 1 && !is_pushed(task_id, id.device)) continue;
    if (gray_bucket(id.device) >= t.gray_percent) continue;
    if (!take_token(t)) {
      log_.limited(LogLevel::info, "ota-rate-limit",
                   "iotgate: OTA task " + task_id + ": rate limit reached; " + id.device + " waits for its next report");
      return;
    }
    OtaProgress p;
    p.state = OtaState::notified;
    p.notified_at = now;
    p.notified_ms = wall_ms();
    p.down_id = next_down_id(t);
    std::string down_id = p.down_id;
    set_progress(t, id.device, std::move(p), 0, false);
    log_.info("iotgate: OTA task " + task_id + ": notifying " + id.product + "/" + id.device + " of " + t.target_version);
    notify(t, down_id);
    return;  // one task per report
  }
}

void OtaRouter::on_ack(const Identity& id, std::string_view down_id) {
  for (auto& [task_id, devices] : progress_) {
    auto it = devices.find(id.device);
    if (it == devices.end() || it->second.down_id != down_id) continue;
    auto t = tasks_.find(task_id);
    if (t == tasks_.end() || t->second.product != id.product) continue;
    if (it->second.state != OtaState::notified) return;  // a retransmitted ack changes nothing
    OtaProgress p = it->second;
    p.state = OtaState::acked;
    p.acked_at = clock_();
    p.acked_ms = wall_ms();
    set_progress(t->second, id.device, std::move(p), 1, false);
    return;
  }
  log_.limited(LogLevel::notice, "ota-unknown-ack",
               "iotgate: OTA ack from " + id.product + "/" + id.device + " names unknown DownID " + std::string(down_id));
}

std::vector<std::string> OtaRouter::push(const std::string& task_id, const std::vector<std::string>& devices) {
  auto t = tasks_.find(task_id);
  if (t == tasks_.end()) {
    log_.warning("iotgate: push for unknown task " + task_id + " ignored");
    return {};
  }
  std::vector<std::string> marked;
  if (devices.empty()) {
    marked.push_back("*");
  } else {
    for (const auto& d : devices)
      if (in_scope(t->second, d)) marked.push_back(d);
  }
  if (marked.empty()) return marked;
  for (const auto& d : marked) pushed_[task_id].insert(d);
  StoreJob job;
  job.type = StoreJob::Type::ota_pushed;
  job.durable = true;
  job.product = t->second.product;
  job.fields = {{"task", task_id}};
  for (size_t i = 0; i < marked.size(); ++i) job.fields["d" + std::to_string(i)] = marked[i];
  effects_.submit(std::move(job));
  log_.info("iotgate: OTA task " + task_id + " pushed to " + (devices.empty() ? std::string("every device in scope")
                                                                               : std::to_string(marked.size()) + " devices"));
  return marked;
}

void OtaRouter::sweep_timeouts() {
  int64_t now = clock_();
  for (auto& [task_id, devices] : progress_) {
    auto t = tasks_.find(task_id);
    if (t == tasks_.end()) continue;
    std::vector<std::string> expired;
    for (const auto& [device, p] : devices) {
      if (p.state == OtaState::notified && now - p.notified_at > t->second.ack_timeout) expired.push_back(device);
      else if (p.state == OtaState::acked && now - p.notified_at > t->second.upgrade_timeout) expired.push_back(device);
    }
    for (const auto& device : expired) {
      OtaProgress p = devices[device];
      log_.notice("iotgate: OTA task " + task_id + ": " + device + " timed out while " + to_string(p.state));
      p.state = OtaState::timed_out;
      p.finished_at = now;
      set_progress(t->second, device, std::move(p), 0, false);
    }
  }
}

}  // namespace iotgate
