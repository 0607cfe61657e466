// The mosquitto 2.0.11 adapter: entry points and callbacks, translating between the broker and iotgate::Gate.
// Every callback runs on the broker's thread; Redis I/O runs in the store process (StoreProcess), whose answers
// are read in TICK. The broker process gets no thread of ours.
#include <mosquitto_broker.h>  // before mosquitto_plugin.h: the 2.0.11 headers need this order in C++
// The build hides every symbol (CMakeLists.txt); the entry points the broker looks up stay visible.
#pragma GCC visibility push(default)
#include <mosquitto_plugin.h>
#pragma GCC visibility pop
#include <mosquitto.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <memory>
#include <string>
#include <vector>

#include "iotgate/config.h"
#include "iotgate/crypto.h"
#include "iotgate/gate.h"
#include "iotgate/log.h"
#include "iotgate/store_process.h"
#include "metrics_http.h"

namespace {

using namespace iotgate;

int to_mosquitto_level(LogLevel level) {
  switch (level) {
    case LogLevel::error: return MOSQ_LOG_ERR;
    case LogLevel::warning: return MOSQ_LOG_WARNING;
    case LogLevel::notice: return MOSQ_LOG_NOTICE;
    case LogLevel::info: return MOSQ_LOG_INFO;
    case LogLevel::debug: return MOSQ_LOG_DEBUG;
  }
  return MOSQ_LOG_INFO;
}

class BrokerEffects : public Effects {
 public:
  explicit BrokerEffects(StoreProcess& store) : store_(store) {}
  void publish_to_client(const std::string& client_id, const std::string& topic, const std::string& payload,
                         int qos) override {
    void* buf = mosquitto_malloc(payload.size() ? payload.size() : 1);
    if (!buf) return;
    memcpy(buf, payload.data(), payload.size());
    // With a client id: only that client gets it, with no ACL check, so secrets reach no other subscriber.
    int rc = mosquitto_broker_publish(client_id.c_str(), topic.c_str(), static_cast<int>(payload.size()), buf, qos,
                                      false, nullptr);
    if (rc != MOSQ_ERR_SUCCESS) mosquitto_free(buf);
  }
  void publish(const std::string& topic, const std::string& payload, int qos) override {
    void* buf = mosquitto_malloc(payload.size() ? payload.size() : 1);
    if (!buf) return;
    memcpy(buf, payload.data(), payload.size());
    int rc = mosquitto_broker_publish(nullptr, topic.c_str(), static_cast<int>(payload.size()), buf, qos, false,
                                      nullptr);
    if (rc != MOSQ_ERR_SUCCESS) mosquitto_free(buf);
  }
  void clear_retained(const std::string& topic) override {
    mosquitto_broker_publish(nullptr, topic.c_str(), 0, nullptr, 0, true, nullptr);
  }
  void kick(const std::string& client_id) override { kicks_.push_back(client_id); }
  void submit(StoreJob job) override { store_.submit(job); }
  void run_kicks() {
    std::vector<std::string> kicks;
    kicks.swap(kicks_);
    for (const auto& cid : kicks) mosquitto_kick_client_by_clientid(cid.c_str(), false);
  }

 private:
  StoreProcess& store_;
  std::vector<std::string> kicks_;
};

struct Plugin {
  mosquitto_plugin_id_t* id = nullptr;
  Config config;
  Log log{[](LogLevel level, const std::string& text) { mosquitto_log_printf(to_mosquitto_level(level), "%s", text.c_str()); }};
  std::unique_ptr<StoreProcess> store;
  std::unique_ptr<BrokerEffects> effects;
  std::unique_ptr<Gate> gate;
  int64_t metrics_sent_at = 0;  // Unix seconds of the last sample handed to the store process
};
Plugin* g_plugin = nullptr;

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string_view or_empty(const char* s) { return s ? std::string_view(s) : std::string_view(); }
// The broker's own id buffer (the gate confirms sessions by its address), "" when the client has none.
const char* client_id_of(const mosquitto* client) {
  const char* id = mosquitto_client_id(client);
  return id ? id : "";
}

// Never let an exception cross into the broker; a failure refuses rather than allows.
template <typename F>
int guarded(int on_error, F&& f) {
  try {
    return f();
  } catch (const std::exception& e) {
    mosquitto_log_printf(MOSQ_LOG_ERR, "iotgate: internal error: %s", e.what());
  } catch (...) {
    mosquitto_log_printf(MOSQ_LOG_ERR, "iotgate: internal error");
  }
  return on_error;
}

int on_basic_auth(int, void* event_data, void*) {
  auto* ed = static_cast<mosquitto_evt_basic_auth*>(event_data);
  return guarded(MOSQ_ERR_AUTH, [&] {
    ClientInfo client;
    client.client_id = client_id_of(ed->client);
    if (ed->username) client.username = std::string_view(ed->username);
    client.address = or_empty(mosquitto_client_address(ed->client));
    client.handle = ed->client;
    std::optional<std::string_view> password;
    if (ed->password) password = std::string_view(ed->password);
    return g_plugin->gate->authenticate(client, password) ? MOSQ_ERR_SUCCESS : MOSQ_ERR_AUTH;
  });
}

int on_acl_check(int, void* event_data, void*) {
  auto* ed = static_cast<mosquitto_evt_acl_check*>(event_data);
  return guarded(MOSQ_ERR_ACL_DENIED, [&] {
    Access access;
    switch (ed->access) {
      case MOSQ_ACL_READ: access = Access::read; break;
      case MOSQ_ACL_WRITE: access = Access::write; break;
      case MOSQ_ACL_SUBSCRIBE: access = Access::subscribe; break;
      case MOSQ_ACL_UNSUBSCRIBE: access = Access::unsubscribe; break;
      default: return MOSQ_ERR_ACL_DENIED;
    }
    const char* client_id = client_id_of(ed->client);
    const char* username = mosquitto_client_username(ed->client);
    bool ok;
    // The topic goes as the broker's C string: the gate reads only as much of it as it compares.
    if (access == Access::write) {
      std::string_view payload(static_cast<const char*>(ed->payload), ed->payload ? ed->payloadlen : 0);
      ok = g_plugin->gate->on_publish(client_id, ed->client, username, ed->topic, payload, ed->retain) ==
           Verdict::pass;
    } else {
      ok = g_plugin->gate->check_acl(client_id, ed->client, username, access, ed->topic);
    }
    return ok ? MOSQ_ERR_SUCCESS : MOSQ_ERR_ACL_DENIED;
  });
}

int on_disconnect(int, void* event_data, void*) {
  auto* ed = static_cast<mosquitto_evt_disconnect*>(event_data);
  return guarded(MOSQ_ERR_SUCCESS, [&] {
    const char* cid = mosquitto_client_id(ed->client);
    if (cid) g_plugin->gate->on_disconnect(cid, ed->client);
    return MOSQ_ERR_SUCCESS;
  });
}

// What the store process sent, to the gate (or the log).
void apply(std::vector<StoreEvent> events) {
  for (auto& event : events) {
    std::visit(
        [](auto&& e) {
          using T = std::decay_t<decltype(e)>;
          if constexpr (std::is_same_v<T, Snapshot>) g_plugin->gate->on_snapshot(std::move(e));
          else if constexpr (std::is_same_v<T, EntityUpdate>) g_plugin->gate->on_update(e);
          else if constexpr (std::is_same_v<T, StoreResult>) g_plugin->gate->on_result(e);
          else if constexpr (std::is_same_v<T, Command>) g_plugin->gate->on_command(e);
          else g_plugin->log.write(e.level, e.text);
        },
        event);
  }
}

int on_tick(int, void*, void*) {
  return guarded(MOSQ_ERR_SUCCESS, [&] {
    apply(g_plugin->store->drain());
    g_plugin->gate->tick();
    g_plugin->effects->run_kicks();
    if (g_plugin->config.metrics_listen) {  // once a second: the page is a Prometheus scrape, not a live view
      const int64_t now = unix_now();
      if (now != g_plugin->metrics_sent_at) {
        g_plugin->metrics_sent_at = now;
        g_plugin->store->report_metrics(g_plugin->gate->metrics(now));
      }
    }
    g_plugin->store->flush_when_due();  // what this and earlier ticks' callbacks asked for
    return MOSQ_ERR_SUCCESS;
  });
}

// mosquitto 2.0.11 never fires TICK with per_listener_settings true, and without TICK nothing from Redis would
// ever be applied. The plugin API does not expose the setting, so read the broker's own config file (-c).
bool per_listener_settings_on() {
  std::ifstream cmdline("/proc/self/cmdline", std::ios::binary);
  std::string arg, config;
  bool next_is_config = false;
  while (std::getline(cmdline, arg, '\0')) {
    if (next_is_config) config = arg;
    next_is_config = arg == "-c" || arg == "--config-file";
  }
  if (config.empty()) return false;
  std::ifstream file(config);
  std::string line;
  bool on = false;
  while (std::getline(file, line)) {
    std::istringstream words(line);
    std::string key, value;
    if (words >> key >> value && key == "per_listener_settings") on = value == "true";
  }
  return on;
}

struct Registration {
  int event;
  MOSQ_FUNC_generic_callback cb;
};
const Registration kCallbacks[] = {
    {MOSQ_EVT_BASIC_AUTH, on_basic_auth}, {MOSQ_EVT_ACL_CHECK, on_acl_check}, {MOSQ_EVT_DISCONNECT, on_disconnect},
    {MOSQ_EVT_TICK, on_tick},
};

}  // namespace

extern "C" {

int mosquitto_plugin_version(int supported_version_count, const int* supported_versions) {
  for (int i = 0; i < supported_version_count; ++i)
    if (supported_versions[i] == 5) return 5;
  return -1;
}

int mosquitto_plugin_init(mosquitto_plugin_id_t* identifier, void** user_data, struct mosquitto_opt* opts,
                          int opt_count) {
  return guarded(MOSQ_ERR_UNKNOWN, [&] {
    std::vector<std::pair<std::string, std::string>> options;
    for (int i = 0; i < opt_count; ++i) options.emplace_back(opts[i].key ? opts[i].key : "", opts[i].value ? opts[i].value : "");
    auto parsed = parse_config(options);
    if (auto* error = std::get_if<std::string>(&parsed)) {
      mosquitto_log_printf(MOSQ_LOG_ERR, "iotgate: refusing to start: %s", error->c_str());
      return MOSQ_ERR_INVAL;
    }
    if (per_listener_settings_on()) {
      mosquitto_log_printf(MOSQ_LOG_ERR,
                           "iotgate: refusing to start: per_listener_settings true stops mosquitto 2.0.11 from running "
                           "the plugin's timer (TICK); set it to false");
      return MOSQ_ERR_INVAL;
    }
    auto plugin = std::make_unique<Plugin>();
    plugin->id = identifier;
    plugin->config = std::get<Config>(parsed);
    plugin->config.broker_id = random_hex(8);  // the gate's and the store process's (Config::broker_id)
    plugin->log.set_level(plugin->config.log_level);
    plugin->log.set_rate(plugin->config.log_burst, plugin->config.log_window);
    plugin->store = std::make_unique<StoreProcess>(plugin->config, serve_metrics);
    plugin->effects = std::make_unique<BrokerEffects>(*plugin->store);
    plugin->gate = std::make_unique<Gate>(plugin->config, plugin->log, *plugin->effects, unix_now);
    plugin->store->set_device_hook([gate = plugin->gate.get()](Device& d) { gate->carry_over(d); });
    // Forked now, while the broker has one thread, and before the listeners exist.
    std::string error;
    if (!plugin->store->start(&error)) {
      mosquitto_log_printf(MOSQ_LOG_ERR, "iotgate: refusing to start: cannot start the store process (%s)",
                           error.c_str());
      return MOSQ_ERR_UNKNOWN;
    }
    g_plugin = plugin.release();
    for (const auto& r : kCallbacks) {
      if (mosquitto_callback_register(identifier, r.event, r.cb, nullptr, nullptr) != MOSQ_ERR_SUCCESS) {
        mosquitto_log_printf(MOSQ_LOG_ERR, "iotgate: refusing to start: cannot register callback %d", r.event);
        return MOSQ_ERR_UNKNOWN;
      }
    }
    mosquitto_log_printf(MOSQ_LOG_NOTICE, "iotgate: started; redis %s db %d, key prefix '%s'; store process %d",
                         iotgate::describe_redis(g_plugin->config).c_str(), g_plugin->config.redis_db,
                         g_plugin->config.key_prefix.c_str(), static_cast<int>(g_plugin->store->pid()));
    // mosquitto opens its listeners after this returns: loading first spares a fleet that reconnects at once a
    // stretch of "not loaded" refusals, and parses at full speed (in TICKs a load gets kDrainBudget per TICK).
    if (g_plugin->config.load_wait > 0) {
      const auto begun = std::chrono::steady_clock::now();
      apply(g_plugin->store->wait_for_load(std::chrono::seconds(g_plugin->config.load_wait)));
      if (!g_plugin->gate->loaded())
        mosquitto_log_printf(MOSQ_LOG_WARNING,
                             "iotgate: opening the listeners before the first load (waited %lld ms); logins are "
                             "refused until it is in",
                             static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                        std::chrono::steady_clock::now() - begun)
                                                        .count()));
    }
    *user_data = g_plugin;
    return MOSQ_ERR_SUCCESS;
  });
}

int mosquitto_plugin_cleanup(void*, struct mosquitto_opt*, int) {
  if (!g_plugin) return MOSQ_ERR_SUCCESS;
  for (const auto& r : kCallbacks) mosquitto_callback_unregister(g_plugin->id, r.event, r.cb, nullptr);
  g_plugin->gate->on_shutdown();
  // The store process writes what is queued first, while Redis answers; writes still held (Redis unreachable)
  // are lost with it: say how many.
  std::vector<LogLine> lines;
  uint64_t held = g_plugin->store->stop(std::chrono::seconds(10), lines);
  for (const auto& line : lines) g_plugin->log.write(line.level, line.text);
  if (held)
    mosquitto_log_printf(MOSQ_LOG_WARNING, "iotgate: stopping with %llu writes not yet in redis",
                         static_cast<unsigned long long>(held));
  delete g_plugin;
  g_plugin = nullptr;
  return MOSQ_ERR_SUCCESS;
}

}  // extern "C"
