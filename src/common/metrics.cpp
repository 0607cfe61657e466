#include "iotgate/metrics.h"

#include <cstdio>
#include <vector>

namespace iotgate {
namespace {

struct Family {
  const char* name;
  const char* type;
  const char* help;
};

// Every family, in the page's order; conf/metrics.md explains each (keep the two alike).
const Family kFamilies[] = {
    {"iotgate_logins_accepted_total", "counter", "Logins accepted, by protocol and session kind."},
    {"iotgate_logins_refused_total", "counter",
     "Logins refused, by protocol (the module that claimed the login; unknown when none did) and reason."},
    {"iotgate_sessions", "gauge", "Sessions the plugin holds on this broker, by kind."},
    {"iotgate_acl_denials_total", "counter", "Topic accesses the ACL refused, by access (read, write, subscribe, unsubscribe)."},
    {"iotgate_bans_total", "counter", "Failed-login bans begun, by scope (username: one username from an address; address: all of it)."},
    {"iotgate_bans_active", "gauge", "Bans in force now."},
    {"iotgate_ota_events_total", "counter",
     "OTA progress steps this broker recorded, by task and event (notified, acked, succeeded, failed, timed_out)."},
    {"iotgate_loaded", "gauge", "1 once the broker holds the data loaded from Redis (logins are refused before)."},
    {"iotgate_redis_up", "gauge", "1 while the store process's connections to Redis work."},
    {"iotgate_store_queue_depth", "gauge", "Writes waiting in the store process for Redis (held ones included)."},
    {"iotgate_loads_total", "counter", "Full loads of everything from Redis since the store process started."},
    {"iotgate_last_load_timestamp_seconds", "gauge", "When the last full load ended (Unix time)."},
    {"iotgate_last_load_duration_seconds", "gauge", "How long the last full load read Redis."},
    {"iotgate_last_load_records", "gauge", "Records (products, devices, accounts, tasks, progress, ...) the last full load read."},
};

std::string_view family_of(std::string_view key) { return key.substr(0, key.find('{')); }

std::string number(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

}  // namespace

std::string metric_key(std::string_view name,
                       std::initializer_list<std::pair<std::string_view, std::string_view>> labels) {
  std::string out(name);
  if (labels.size() == 0) return out;
  out += '{';
  bool first = true;
  for (const auto& [label, value] : labels) {
    if (!first) out += ',';
    first = false;
    out.append(label).append("=\"");
    for (char c : value) {
      if (c == '\\' || c == '"') out += '\\';
      if (c == '\n') {
        out += "\\n";
        continue;
      }
      out += c;
    }
    out += '"';
  }
  out += '}';
  return out;
}

std::string render_metrics(const MetricSamples& broker, const StoreStats& store) {
  MetricSamples all = broker;
  all[metric_key("iotgate_redis_up", {})] = store.redis_up ? "1" : "0";
  all[metric_key("iotgate_store_queue_depth", {})] = std::to_string(store.queued_jobs);
  all[metric_key("iotgate_loads_total", {})] = std::to_string(store.loads);
  if (store.loads) {
    all[metric_key("iotgate_last_load_timestamp_seconds", {})] = std::to_string(store.last_load_at);
    all[metric_key("iotgate_last_load_duration_seconds", {})] = number(store.last_load_seconds);
    all[metric_key("iotgate_last_load_records", {})] = std::to_string(store.last_load_records);
  }
  std::map<std::string_view, std::vector<const MetricSamples::value_type*>> by_family;
  for (const auto& sample : all) by_family[family_of(sample.first)].push_back(&sample);
  std::string out;
  for (const Family& f : kFamilies) {
    out.append("# HELP ").append(f.name).append(" ").append(f.help).append("\n");
    out.append("# TYPE ").append(f.name).append(" ").append(f.type).append("\n");
    auto it = by_family.find(f.name);
    if (it == by_family.end()) continue;
    for (const auto* sample : it->second) out.append(sample->first).append(" ").append(sample->second).append("\n");
  }
  return out;
}

void MetricsBoard::set_broker(MetricSamples samples) {
  std::lock_guard lock(mutex_);
  broker_ = std::move(samples);
}

MetricSamples MetricsBoard::broker() const {
  std::lock_guard lock(mutex_);
  return broker_;
}

}  // namespace iotgate
