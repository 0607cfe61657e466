#include "iotgate/worker.h"

#include <pthread.h>
#include <signal.h>

namespace iotgate {
namespace {
// The broker handles these; our threads must not receive them.
void block_broker_signals() {
  sigset_t set;
  sigemptyset(&set);
  for (int s : {SIGHUP, SIGTERM, SIGINT, SIGUSR1, SIGUSR2, SIGPIPE}) sigaddset(&set, s);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}
constexpr auto kRetryMin = std::chrono::milliseconds(200);
constexpr auto kRetryMax = std::chrono::milliseconds(3000);
}  // namespace

StoreWorker::StoreWorker(const Config& config) : config_(config) {}
StoreWorker::~StoreWorker() { stop(); }

void StoreWorker::start() {
  stop_ = false;
  writer_ = std::thread([this] { writer_loop(); });
  watcher_ = std::thread([this] { watcher_loop(); });
}

void StoreWorker::stop() {
  stop_ = true;
  jobs_cv_.notify_all();
  sleep_cv_.notify_all();
  if (writer_.joinable()) writer_.join();
  if (watcher_.joinable()) watcher_.join();
}

void StoreWorker::submit(StoreJob job) {
  {
    std::lock_guard lock(jobs_mutex_);
    jobs_.push_back(std::move(job));
  }
  jobs_cv_.notify_one();
}

size_t StoreWorker::held_writes() const {
  std::lock_guard lock(jobs_mutex_);
  return jobs_.size();
}

std::vector<WorkerEvent> StoreWorker::drain() {
  std::vector<WorkerEvent> out;
  std::lock_guard lock(events_mutex_);
  out.swap(events_);
  return out;
}

void StoreWorker::emit(WorkerEvent event) {
  std::lock_guard lock(events_mutex_);
  events_.push_back(std::move(event));
}

bool StoreWorker::sleep_unless_stopped(std::chrono::milliseconds d) {
  std::unique_lock lock(sleep_mutex_);
  sleep_cv_.wait_for(lock, d, [this] { return stop_.load(); });
  return !stop_;
}

void StoreWorker::writer_loop() {
  block_broker_signals();
  RedisStore store(config_);
  auto retry = kRetryMin;
  bool reported_down = false;
  while (!stop_) {
    StoreJob job;
    {
      std::unique_lock lock(jobs_mutex_);
      jobs_cv_.wait(lock, [this] { return stop_ || !jobs_.empty(); });
      if (stop_) break;
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    if (!store.connected() && !store.connect()) {
      // Redis is away: answer the waiting devices "busy" now; keep the durable writes for later.
      std::deque<StoreJob> kept;
      size_t held = 0;
      {
        std::lock_guard lock(jobs_mutex_);
        jobs_.push_front(std::move(job));
        for (auto& j : jobs_) {
          if (j.durable) kept.push_back(std::move(j));
          else if (j.token) emit(StoreResult{j.token, false, "unavailable", std::nullopt});
        }
        while (kept.size() > kMaxHeldWrites) kept.pop_front();
        jobs_.swap(kept);
        held = jobs_.size();
      }
      if (!reported_down) {
        log(LogLevel::warning, "iotgate: redis unreachable (" + store.last_error() + "); holding " +
                                   std::to_string(held) + " writes until it returns");
        reported_down = true;
      }
      sleep_unless_stopped(retry);
      retry = std::min(retry * 2, kRetryMax);
      continue;
    }
    // Touches queued behind this one go in the same call: under a login storm that is one write per batch.
    std::vector<StoreJob> batch;
    if (job.type == StoreJob::Type::touch_device) {
      batch.push_back(std::move(job));
      std::lock_guard lock(jobs_mutex_);
      while (!jobs_.empty() && jobs_.front().type == StoreJob::Type::touch_device && batch.size() < kTouchBatch) {
        batch.push_back(std::move(jobs_.front()));
        jobs_.pop_front();
      }
    }
    StoreResult result = batch.empty() ? store.run(job) : store.touch_many(batch);
    if (!result.ok && result.error == "unavailable" && !store.connected()) {
      std::lock_guard lock(jobs_mutex_);
      if (!batch.empty()) {
        for (auto it = batch.rbegin(); it != batch.rend(); ++it) jobs_.push_front(std::move(*it));
      } else if (job.durable) {
        jobs_.push_front(std::move(job));
      } else if (job.token) {
        emit(std::move(result));
      }
      continue;  // the next round reconnects
    }
    if (reported_down) {
      log(LogLevel::notice, "iotgate: redis reachable again; applying held writes");
      reported_down = false;
    }
    retry = kRetryMin;
    if (!result.ok && result.error == "unavailable")
      log(LogLevel::warning, "iotgate: redis refused a write: " + store.last_error());
    if (job.token) emit(std::move(result));
  }
}

void StoreWorker::watcher_loop() {
  block_broker_signals();
  RedisStore store(config_);
  auto retry = kRetryMin;
  bool reported_down = false;
  while (!stop_) {
    if (!store.connect()) {
      if (!reported_down) {
        log(LogLevel::warning, "iotgate: cannot load from redis (" + store.last_error() + "); retrying");
        reported_down = true;
      }
      sleep_unless_stopped(retry);
      retry = std::min(retry * 2, kRetryMax);
      continue;
    }
    // Read the stream position first, so changes made during the load are replayed after it.
    auto position = store.last_change_id();
    // Commands given while no plugin was listening are stale: start after the newest one.
    auto commands_position = position ? store.last_command_id() : std::nullopt;
    std::optional<Snapshot> snapshot = commands_position ? store.load_all() : std::nullopt;
    if (!snapshot) {
      sleep_unless_stopped(retry);
      continue;
    }
    reported_down = false;
    retry = kRetryMin;
    emit(std::move(*snapshot));
    std::string after = *position, commands_after = *commands_position;
    while (!stop_) {
      std::vector<Command> commands;
      auto updates = store.read_changes(after, commands_after, 500, commands);
      if (!updates) {
        log(LogLevel::warning, "iotgate: lost redis (" + store.last_error() + "); will reload when it returns");
        reported_down = true;
        break;
      }
      for (auto& u : *updates) emit(std::move(u));
      for (auto& c : commands) emit(std::move(c));
    }
  }
}

}  // namespace iotgate
