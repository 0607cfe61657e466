#include "iotgate/worker.h"

#include <malloc.h>

namespace iotgate {
namespace {
constexpr auto kRetryMin = std::chrono::milliseconds(200);
constexpr auto kRetryMax = std::chrono::milliseconds(3000);
// With sentinels a retry asks them again, which finds the new primary once a failover has promoted one: retry at
// least once a second, so the plugin is on the new primary within about a second of the promotion.
constexpr auto kSentinelRetryMax = std::chrono::milliseconds(1000);
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
  events_cv_.notify_all();
  if (writer_.joinable()) writer_.join();
  if (watcher_.joinable()) watcher_.join();
}

void StoreWorker::submit(StoreJob job) {
  // Login / logout times need no hurry: the writer picks them up within kTouchDelay, in batches, without a wakeup
  // (a futex call and a context switch) on the broker thread for every login.
  bool wake = job.type != StoreJob::Type::touch_device;
  {
    std::lock_guard lock(jobs_mutex_);
    jobs_.push_back(std::move(job));
  }
  if (wake) jobs_cv_.notify_one();
}

StoreStats StoreWorker::stats() const {
  StoreStats st;
  st.redis_up = watcher_up_ && !writer_down_;
  st.queued_jobs = held_writes();
  st.loads = loads_;
  st.last_load_at = last_load_at_;
  st.last_load_seconds = static_cast<double>(last_load_us_) / 1e6;
  st.last_load_records = last_load_records_;
  return st;
}

size_t StoreWorker::held_writes() const {
  std::lock_guard lock(jobs_mutex_);
  return jobs_.size();
}

std::vector<WorkerEvent> StoreWorker::drain() {
  std::vector<WorkerEvent> out;
  {
    std::lock_guard lock(events_mutex_);
    out.swap(events_);
  }
  events_cv_.notify_all();
  return out;
}

void StoreWorker::emit(WorkerEvent event) {
  const bool load = std::holds_alternative<LoadRecord>(event);
  bool first;
  {
    std::unique_lock lock(events_mutex_);
    // A load's records wait for drain() to catch up: queued all at once, 100,000 devices took ~100 MB.
    if (load) events_cv_.wait(lock, [this] { return events_.size() < kMaxQueuedRecords || stop_; });
    first = events_.empty();
    events_.push_back(std::move(event));
  }
  // Only the first event of a batch rings: the ones behind it are taken by the drain() that ring causes (a load of
  // a million devices rang a million times).
  if (first && on_event_) on_event_();
}

bool StoreWorker::sleep_unless_stopped(std::chrono::milliseconds d) {
  std::unique_lock lock(sleep_mutex_);
  sleep_cv_.wait_for(lock, d, [this] { return stop_.load(); });
  return !stop_;
}

void StoreWorker::writer_loop() {
  RedisStore store(config_, "iotgate-writer");
  const auto retry_max = config_.redis_sentinels.empty() ? kRetryMax : kSentinelRetryMax;
  auto retry = kRetryMin;
  uint64_t writer_moves = primary_moves_.load();
  bool reported_down = false;
  auto urgent = [this] { return stop_ || jobs_.size() >= kTouchBatch || jobs_.back().type != StoreJob::Type::touch_device; };
  // Redis is away: say so once per outage, then wait the backoff before the next round tries again.
  auto wait_for_redis = [&](const std::string& warning) {
    writer_down_ = true;
    if (!reported_down) {
      log(LogLevel::warning, warning);
      reported_down = true;
    }
    sleep_unless_stopped(retry);
    retry = std::min(retry * 2, retry_max);
  };
  while (true) {
    // Next batch: one job, or every touch queued (up to kTouchBatch): a login storm costs one write per batch.
    std::vector<StoreJob> batch;
    {
      std::unique_lock lock(jobs_mutex_);
      // Touches arrive without a wakeup: look every kTouchDelay, and let lone touches gather for one more.
      while (!stop_ && jobs_.empty()) jobs_cv_.wait_for(lock, kTouchDelay);
      if (!jobs_.empty() && !urgent()) jobs_cv_.wait_for(lock, kTouchDelay, urgent);
      if (jobs_.empty()) break;  // stopping, nothing left
      bool touches = jobs_.front().type == StoreJob::Type::touch_device;
      do {
        batch.push_back(std::move(jobs_.front()));
        jobs_.pop_front();
      } while (touches && !jobs_.empty() && jobs_.front().type == StoreJob::Type::touch_device &&
               batch.size() < kTouchBatch);
    }
    // Redis is away: answer the waiting devices "busy" now; keep the durable writes (and login/logout times) for
    // later. Returns how many writes are held.
    auto hold_writes = [&](std::vector<StoreJob>& unwritten) {
      std::deque<StoreJob> kept;
      std::lock_guard lock(jobs_mutex_);
      for (auto it = unwritten.rbegin(); it != unwritten.rend(); ++it) jobs_.push_front(std::move(*it));
      for (auto& j : jobs_) {
        if (j.durable) kept.push_back(std::move(j));
        else if (j.token) emit(StoreResult{j.token, false, "unavailable", std::nullopt});
      }
      while (kept.size() > kMaxHeldWrites) kept.pop_front();
      jobs_.swap(kept);
      return jobs_.size();
    };
    // The watcher saw the sentinels name another primary: leave this one (it may still take writes, to lose them).
    const uint64_t moves = primary_moves_.load();
    if (moves != writer_moves) store.disconnect();
    if (!store.connected() && !store.connect()) {
      size_t held = hold_writes(batch);
      if (stop_) break;
      wait_for_redis("iotgate: redis unreachable (" + store.last_error() + "); holding " + std::to_string(held) +
                     " writes until it returns");
      continue;
    }
    writer_moves = moves;
    writer_down_ = false;
    bool is_touch = batch.front().type == StoreJob::Type::touch_device;
    StoreResult result = is_touch ? store.touch_many(batch) : store.run(batch.front());
    if (!result.ok && result.error == "unavailable" && !store.connected()) {
      if (!is_touch && !batch.front().durable) {
        if (batch.front().token) emit(std::move(result));
        batch.clear();
      }
      hold_writes(batch);  // and the devices waiting behind this write hear "busy" now, not after the backoff
      if (stop_) continue;  // the next round keeps them as held
      // Lost mid-write, or Redis answers but is still loading its data: the next round reconnects after the
      // backoff (a loading Redis accepts connections at once, so without it this would spin).
      wait_for_redis("iotgate: redis unavailable during a write (" + store.last_error() +
                     "); holding the writes until it answers");
      continue;
    }
    if (reported_down) {
      log(LogLevel::notice, "iotgate: redis reachable again; applying held writes");
      reported_down = false;
    }
    retry = kRetryMin;
    if (!result.ok && result.error == "unavailable")
      log(LogLevel::warning, "iotgate: redis refused a write: " + store.last_error());
    if (!is_touch && batch.front().token) emit(std::move(result));
  }
}

void StoreWorker::watcher_loop() {
  RedisStore store(config_, "iotgate-watcher");
  const auto retry_max = config_.redis_sentinels.empty() ? kRetryMax : kSentinelRetryMax;
  auto retry = kRetryMin;
  HostPort primary;  // the primary the sentinels named last, to log each change
  bool reported_down = false;
  // Where the last connection stopped reading the streams; empty until a load has succeeded.
  std::string after, commands_after;
  while (!stop_) {
    if (!store.connect()) {
      watcher_up_ = false;
      if (!reported_down) {
        log(LogLevel::warning, "iotgate: cannot load from redis (" + store.last_error() + "); retrying");
        reported_down = true;
      }
      sleep_unless_stopped(retry);
      retry = std::min(retry * 2, retry_max);
      continue;
    }
    if (!config_.redis_sentinels.empty() && !(store.address() == primary)) {
      primary = store.address();
      log(LogLevel::notice, "iotgate: redis primary of sentinel master " + config_.redis_master_name + ": " +
                                to_string(primary));
    }
    // Back after an outage: when the changes stream still holds the last entry read, nothing after it was trimmed,
    // so following it from there misses nothing and spares the broker a reload of everything.
    std::optional<bool> resume = after.empty() ? std::optional<bool>(false) : store.stream_holds(store.key("changes"), after);
    if (!resume) {
      sleep_unless_stopped(retry);
      continue;
    }
    if (*resume) {
      std::optional<bool> commands_kept = store.stream_holds(store.key("commands"), commands_after);
      std::optional<std::string> newest = commands_kept && !*commands_kept ? store.last_command_id() : std::nullopt;
      if (!commands_kept || (!*commands_kept && !newest)) {
        sleep_unless_stopped(retry);
        continue;
      }
      if (newest) commands_after = *newest;  // trimmed past where we were: as at a load, start after the newest
      log(LogLevel::notice, "iotgate: redis reachable again; following its changes from where they stopped (no reload)");
    } else {
      // Read the stream position first, so changes made during the load are replayed after it.
      auto position = store.last_change_id();
      // Commands given while no plugin was listening are stale: start after the newest one.
      auto commands_position = position ? store.last_command_id() : std::nullopt;
      const auto load_start = std::chrono::steady_clock::now();
      uint64_t records = 0;
      bool loaded = commands_position && store.load_all([this, &records](LoadRecord r) {
        ++records;
        emit(std::move(r));
      });
      // Reading every device hash allocates far more than it keeps: give the freed pages back to the system.
      malloc_trim(0);
      if (!loaded) {
        sleep_unless_stopped(retry);
        continue;
      }
      after = *position;
      commands_after = *commands_position;
      last_load_us_ = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - load_start).count();
      last_load_records_ = records;
      last_load_at_ = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
      ++loads_;
    }
    watcher_up_ = true;
    reported_down = false;
    retry = kRetryMin;
    auto next_check = std::chrono::steady_clock::now() + kSentinelCheck;
    while (!stop_) {
      std::vector<Command> commands;
      auto updates = store.read_changes(after, commands_after, 500, commands);
      if (!updates) {
        watcher_up_ = false;
        log(LogLevel::warning, "iotgate: lost redis (" + store.last_error() + "); will follow it again when it returns");
        reported_down = true;
        break;
      }
      for (auto& u : *updates) emit(std::move(u));
      for (auto& c : commands) emit(std::move(c));
      if (!config_.redis_sentinels.empty() && std::chrono::steady_clock::now() >= next_check) {
        next_check = std::chrono::steady_clock::now() + kSentinelCheck;
        if (store.primary_moved()) {
          log(LogLevel::notice, "iotgate: the sentinels name another primary than " + to_string(store.address()) +
                                    "; moving to it");
          primary_moves_.fetch_add(1);
          break;  // connect() asks the sentinels again
        }
      }
    }
  }
}

}  // namespace iotgate
