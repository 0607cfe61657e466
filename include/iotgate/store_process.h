// The store process: all of iotgate's Redis I/O runs in a process of its own, forked from the broker when the
// plugin starts, and talks with the broker over a Unix socket (wire.h). Not threads in the broker: once a process
// has a second thread, glibc takes its multi-threaded paths (locked malloc arenas, cancellation bookkeeping around
// every read and write), and mosquitto makes several such calls per message: about 3 % of its throughput
// (docs/benchmarks.md). The store process runs StoreWorker's threads instead.
//
// This class is the broker's side; every call is made on the broker thread and none waits in the steady state.
// Jobs are encoded at once and written by flush() (every TICK); drain() reads only after the store process has
// rung the doorbell, a counter in a page both processes share, so a TICK with nothing to read makes no system call.
// A store process that dies is noticed within a second and another is started (it loads everything again).
#pragma once
#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "iotgate/config.h"
#include "iotgate/metrics.h"
#include "iotgate/store.h"
#include "iotgate/wire.h"
#include "iotgate/worker.h"

namespace iotgate {

// What the store process tells the broker; a load arrives as one Snapshot.
using StoreEvent = std::variant<Snapshot, EntityUpdate, StoreResult, LogLine, Command>;

class StoreProcess {
 public:
  // Time one drain() may spend turning a load's records into a Snapshot; a large load takes several TICKs.
  static constexpr std::chrono::milliseconds kDrainBudget{10};
  // Encoded jobs kept while the store process does not read them (it is stopped or stuck); more are dropped.
  static constexpr size_t kMaxUnsentBytes = 64u << 20;

  // Serves the metrics page from the store process: the adapter's HTTP server (the core speaks no HTTP). Called in the
  // store process, once its threads run, when plugin_opt_metrics_listen is set; `page` renders the page (on any
  // thread). Returns why it cannot listen, or nullopt once it does (on threads of its own).
  using MetricsServer =
      std::function<std::optional<std::string>(const HostPort& at, std::function<std::string()> page)>;

  explicit StoreProcess(const Config& config, MetricsServer metrics_server = {});
  ~StoreProcess();
  StoreProcess(const StoreProcess&) = delete;
  StoreProcess& operator=(const StoreProcess&) = delete;

  // Forks the store process. Call while this process has a single thread: a fork copies only the caller's.
  bool start(std::string* error);
  void submit(const StoreJob& job);
  // Called on each device of a load as drain() parses it (Gate::carry_over).
  void set_device_hook(std::function<void(Device&)> hook) { builder_.set_device_hook(std::move(hook)); }
  // Hands the broker's metric samples to the store process (which serves the latest); sent by the next flush().
  void report_metrics(const MetricSamples& samples);
  // Writes what submit() encoded, as much as the socket takes now.
  void flush();
  // flush() once it is due; every TICK calls this. In a login storm (kStormJobs or more jobs in the last kFlushGap)
  // login and logout times go at most once per kFlushGap, unless kFlushBytes have gathered: a write every few
  // milliseconds, not one per TICK (the store process batches them for longer anyway). Anything else goes at once,
  // and so does everything on a broker not in a storm, where a write waiting for the next TICK could wait for
  // mosquitto's idle loop (100 ms) and be lost if the broker were killed meanwhile.
  void flush_when_due();
  static constexpr size_t kFlushBytes = 64u << 10;
  static constexpr std::chrono::milliseconds kFlushGap{10};
  static constexpr uint64_t kStormJobs = 16;
  // Encoded and not yet written to the store process.
  size_t unsent_bytes() const { return out_.size() - out_pos_; }
  std::vector<StoreEvent> drain(std::chrono::milliseconds budget = kDrainBudget);
  // At start, before the broker has clients: waits up to `limit` for the first load, parsing it as it arrives with no
  // budget, and returns what came, in order. Returns early, without it, when the store process reports
  // trouble (a line at warning or worse: Redis unreachable, failing) or goes away; drain() then goes on from there.
  std::vector<StoreEvent> wait_for_load(std::chrono::milliseconds limit);
  // Sends what is queued and asks the store process to write it to Redis and exit, waiting at most `wait`.
  // Returns the writes it could not make; its last log lines are appended to `lines`.
  uint64_t stop(std::chrono::milliseconds wait, std::vector<LogLine>& lines);
  pid_t pid() const { return pid_; }

 private:
  using Clock = std::chrono::steady_clock;
  // Reads what the socket holds, up to a few MiB ahead of parsing (more_ then says there is more).
  void read_available();
  // Parses whole frames until `deadline` (backlog_ says some are left); false when one is malformed.
  bool parse(std::vector<StoreEvent>& out, Clock::time_point deadline, std::optional<uint64_t>* held);
  bool take(const wire::Frame& frame, std::vector<StoreEvent>& out, std::optional<uint64_t>* held);
  // Ends the current store process (SIGKILL unless it has exited), reaps it, says why in the log, and sets when
  // the next one starts.
  void lose(const std::string& why, std::vector<StoreEvent>& out);
  void close_socket();
  // A load passed through: gives back its buffer and the records' memory (tens of MB for 100k devices).
  void release_load_buffers();
  // Encoded frames the store process has not read beyond kMaxUnsentBytes: more are dropped.
  bool unsent_full() const { return unsent_bytes() > kMaxUnsentBytes; }

  Config config_;
  MetricsServer metrics_server_;
  std::atomic<uint64_t>* doorbell_ = nullptr;  // in a MAP_SHARED page; the store process adds 1 after each write
  uint64_t seen_ = 0;
  int fd_ = -1;
  pid_t pid_ = -1;
  bool eof_ = false;
  bool more_ = false;     // the last read stopped at its limit, not at an empty socket
  std::string in_;   // received, not yet parsed
  size_t in_pos_ = 0;
  std::string out_;  // encoded jobs not yet written
  size_t out_pos_ = 0;
  bool urgent_ = false;           // out_ holds something flush_when_due() writes at once
  Clock::time_point last_flush_;  // when flush_when_due() last wrote
  // Whether the broker is in a login storm: jobs submitted in the window before the current one.
  uint64_t submitted_ = 0, window_submitted_ = 0;
  Clock::time_point window_start_;
  bool storm_ = false;
  bool backlog_ = false;  // whole frames left when the last drain ran out of budget
  bool loaded_ = false;   // this drain completed a load
  SnapshotBuilder builder_;
  Clock::time_point started_{};
  Clock::time_point next_check_{};
  Clock::time_point next_start_{};
  std::chrono::milliseconds restart_delay_{500};  // doubled by each early death
  uint64_t dropped_jobs_ = 0;
};

}  // namespace iotgate
