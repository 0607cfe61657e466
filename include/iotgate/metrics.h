// Prometheus metrics (plugin_opt_metrics_listen). The broker thread only counts: plain integers bumped where a
// login, a refusal, an ACL denial, a ban or an OTA step happens (never on a message's allowed path), and once a second
// the adapter hands their sample to the store process (StoreProcess::report_metrics). The store process adds its own
// (queue depth, Redis up, the last load) and serves the text format on its own thread: a scrape never reaches the
// broker thread. conf/metrics.md lists every metric.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>

namespace iotgate {

// One metric sample: the name with its labels as Prometheus writes them ("iotgate_sessions{kind=\"krt-device\"}")
// mapped to its value.
using MetricSamples = std::map<std::string, std::string>;

// `name{label="value",...}` with the values escaped as the text format requires.
std::string metric_key(std::string_view name, std::initializer_list<std::pair<std::string_view, std::string_view>> labels);

// What the store process knows of itself at a scrape.
struct StoreStats {
  bool redis_up = false;          // both connections work (the writer's and the watcher's)
  uint64_t queued_jobs = 0;       // writes waiting for Redis (held ones included while it is away)
  uint64_t loads = 0;             // completed full loads since the store process started
  int64_t last_load_at = 0;       // Unix seconds, 0: none yet
  double last_load_seconds = 0;   // how long the last full load took in Redis
  uint64_t last_load_records = 0; // products, devices, accounts, tasks, ... it read
};

// The page: every family with its HELP and TYPE lines, the broker's samples (`broker`, possibly a second old) and
// the store process's own.
std::string render_metrics(const MetricSamples& broker, const StoreStats& store);

// The broker's latest sample, kept by the store process for its scrapes (written by the thread that reads the
// broker's socket, read by the HTTP server's threads).
class MetricsBoard {
 public:
  void set_broker(MetricSamples samples);
  MetricSamples broker() const;

 private:
  mutable std::mutex mutex_;
  MetricSamples broker_;
};

}  // namespace iotgate
