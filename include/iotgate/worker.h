// The store process's threads (see store_process.h): all Redis I/O happens here, and what they learn goes back
// through drain().
#pragma once
#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <variant>
#include <vector>

#include "iotgate/config.h"
#include "iotgate/log.h"
#include "iotgate/metrics.h"
#include "iotgate/store.h"

namespace iotgate {

struct LogLine {
  LogLevel level;
  std::string text;
};
using WorkerEvent = std::variant<LoadRecord, EntityUpdate, StoreResult, LogLine, Command>;

class StoreWorker {
 public:
  explicit StoreWorker(const Config& config);
  ~StoreWorker();
  void start();
  void stop();  // joins both threads
  void submit(StoreJob job);
  std::vector<WorkerEvent> drain();
  // Called (on a worker thread, no lock held) after an event that found none queued: the caller learns there is
  // something to drain.
  void set_on_event(std::function<void()> on_event) { on_event_ = std::move(on_event); }
  size_t held_writes() const;
  // For the metrics page (any thread).
  StoreStats stats() const;
  // Passes a line to the broker's log, as the worker's own lines go.
  void report(LogLine line) { emit(std::move(line)); }
  // Writes kept while Redis is unreachable beyond this many are dropped, oldest first, with a warning.
  static constexpr size_t kMaxHeldWrites = 200000;
  static constexpr size_t kTouchBatch = 500;
  static constexpr std::chrono::milliseconds kTouchDelay{50};
  // A load's records queued before the watcher waits for drain().
  static constexpr size_t kMaxQueuedRecords = 4096;
  // With sentinels, how often the watcher asks whether they name another primary (a failover that left the old one
  // running, which takes writes until they demote it).
  static constexpr std::chrono::milliseconds kSentinelCheck{500};

 private:
  void writer_loop();
  void watcher_loop();
  void emit(WorkerEvent event);
  void log(LogLevel level, std::string text) { emit(LogLine{level, std::move(text)}); }
  bool sleep_unless_stopped(std::chrono::milliseconds d);

  Config config_;
  std::atomic<bool> stop_{false};
  std::thread writer_, watcher_;

  mutable std::mutex jobs_mutex_;
  std::condition_variable jobs_cv_;
  std::deque<StoreJob> jobs_;

  std::mutex events_mutex_;
  std::condition_variable events_cv_;
  std::vector<WorkerEvent> events_;
  std::function<void()> on_event_;

  // For stats(): each thread says whether its connection works; the watcher records each full load.
  std::atomic<bool> writer_down_{false}, watcher_up_{false};  // the writer: its last write found Redis away
  std::atomic<uint64_t> loads_{0}, last_load_records_{0};
  std::atomic<int64_t> last_load_at_{0}, last_load_us_{0};

  // Bumped by the watcher when the sentinels name another primary: the writer then leaves the old one too.
  std::atomic<uint64_t> primary_moves_{0};

  std::mutex sleep_mutex_;
  std::condition_variable sleep_cv_;
};

}  // namespace iotgate
