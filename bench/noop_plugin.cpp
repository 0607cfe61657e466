// A control for bench/run.sh: a mosquitto plugin that registers the callbacks iotgate registers (BASIC_AUTH,
// ACL_CHECK, DISCONNECT, TICK) and answers each at once. Publishing through it against plain mosquitto
// shows what the plugin interface itself costs per message, apart from iotgate's own work.
// `plugin_opt_thread shared` also starts one idle thread that shares the broker's descriptor table, as any
// plugin thread does unless it unshares it: what that costs the broker. `plugin_opt_thread own` starts the same
// thread with a descriptor table of its own, as iotgate's threads had before its store process: what a plugin
// thread still costs once it leaves the table alone (glibc's multi-threaded paths; see docs/architecture.md).
#include <mosquitto.h>
#include <sched.h>
#include <unistd.h>

#include <cstring>
#include <thread>

#include <mosquitto_broker.h>
#pragma GCC visibility push(default)  // the build hides every symbol; the broker looks these up
#include <mosquitto_plugin.h>
#pragma GCC visibility pop

namespace {
mosquitto_plugin_id_t* g_id = nullptr;
int allow(int, void*, void*) { return MOSQ_ERR_SUCCESS; }
constexpr int kEvents[] = {MOSQ_EVT_BASIC_AUTH, MOSQ_EVT_ACL_CHECK, MOSQ_EVT_DISCONNECT, MOSQ_EVT_TICK};
}  // namespace

extern "C" {
int mosquitto_plugin_version(int, const int*) { return 5; }

int mosquitto_plugin_init(mosquitto_plugin_id_t* id, void**, struct mosquitto_opt* opts, int opt_count) {
  g_id = id;
  for (int i = 0; i < opt_count; ++i) {
    if (!opts[i].key || !opts[i].value || std::strcmp(opts[i].key, "thread")) continue;
    const bool own = !std::strcmp(opts[i].value, "own");
    if (own || !std::strcmp(opts[i].value, "shared"))
      std::thread([own] {
        // A copy of the table, without the broker's descriptors in it.
        if (own && unshare(CLONE_FILES) == 0) close_range(3, ~0U, 0);
        for (;;) pause();
      }).detach();
  }
  for (int event : kEvents)
    if (mosquitto_callback_register(g_id, event, allow, nullptr, nullptr) != MOSQ_ERR_SUCCESS) return MOSQ_ERR_UNKNOWN;
  mosquitto_log_printf(MOSQ_LOG_NOTICE, "noop plugin: loaded");
  return MOSQ_ERR_SUCCESS;
}

int mosquitto_plugin_cleanup(void*, struct mosquitto_opt*, int) {
  for (int event : kEvents) mosquitto_callback_unregister(g_id, event, allow, nullptr);
  return MOSQ_ERR_SUCCESS;
}
}
