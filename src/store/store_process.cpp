#include "iotgate/store_process.h"

#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <new>
#include <optional>

#include "iotgate/wire.h"

namespace iotgate {
namespace {

using namespace std::chrono_literals;

// Bytes read ahead of parsing at most: a load arrives over many drains, and the store process waits (its socket
// full) while the broker parses, instead of the whole load piling up here.
constexpr size_t kReadAhead = 4u << 20;
constexpr auto kHealthCheck = 1s;            // how often the broker looks for a store process that is gone

std::string errno_text(const char* what) { return std::string(what) + ": " + std::strerror(errno); }

// ---- the store process

// Writes all of `data`, ringing the doorbell after each piece that went: the broker reads only after a ring, and a
// socket left full without one would leave both processes waiting.
bool send_all(int fd, std::string_view data, std::atomic<uint64_t>* doorbell) {
  while (!data.empty()) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      data.remove_prefix(static_cast<size_t>(n));
      doorbell->fetch_add(1, std::memory_order_release);
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd p{fd, POLLOUT, 0};
      poll(&p, 1, -1);
    } else if (!(n < 0 && errno == EINTR)) {
      return false;
    }
  }
  return true;
}

// StoreWorker's threads do the Redis I/O; this thread moves jobs in and events out. Never returns.
[[noreturn]] void run_store_process(const Config& config, int fd, std::atomic<uint64_t>* doorbell,
                                    const StoreProcess::MetricsServer& metrics_server) {
  // mosquitto's signal handlers came with the fork. This process ends when the broker says so or goes away (end
  // of file on the socket), after writing what is queued: a Ctrl-C or a SIGTERM to the whole group must not
  // drop those writes.
  for (int s : {SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2, SIGPIPE}) signal(s, SIG_IGN);
  prctl(PR_SET_NAME, "iotgate-store", 0, 0, 0);
  // A load allocates and frees at a high rate on a thread's arena, which glibc shrank and grew again page by page
  // (a third of the load's time in page faults): keep freed memory, and give it back after each load (malloc_trim).
  mallopt(M_TRIM_THRESHOLD, 512 << 20);
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  // Nothing of the broker's but 0-2: its listeners, clients and files stay the broker's alone.
  if (fd != 3) {
    dup2(fd, 3);
    fd = 3;
  }
  close_range(4, ~0U, 0);
  const int wake = eventfd(0, EFD_CLOEXEC);
  if (wake < 0) _exit(1);

  StoreWorker worker(config);
  worker.set_on_event([wake] {
    uint64_t one = 1;
    ssize_t r = write(wake, &one, sizeof one);
    (void)r;
  });
  worker.start();
  MetricsBoard board;  // the broker's latest samples
  if (config.metrics_listen && metrics_server) {
    const std::string at = to_string(*config.metrics_listen);
    auto error = metrics_server(*config.metrics_listen, [&board, &worker] { return render_metrics(board.broker(), worker.stats()); });
    if (error)
      worker.report(LogLine{LogLevel::error, "iotgate: cannot serve metrics on " + at + ": " + *error});
    else
      worker.report(LogLine{LogLevel::notice, "iotgate: metrics on http://" + at + "/metrics"});
  }
  std::string in, out;
  auto send_events = [&] {
    out.clear();
    for (const auto& e : worker.drain()) wire::put_event(out, e);
    bool sent = out.empty() || send_all(fd, out, doorbell);
    if (out.capacity() > (1u << 20)) {  // a load passed: give its buffers back to the system
      std::string().swap(out);
      malloc_trim(0);
    }
    return sent;
  };
  bool running = true;
  while (running) {
    pollfd fds[2] = {{fd, POLLIN, 0}, {wake, POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) continue;  // EINTR
    if (fds[1].revents & POLLIN) {
      uint64_t n = 0;
      ssize_t r = read(wake, &n, sizeof n);
      (void)r;
      if (!send_events()) running = false;  // the broker is gone
    }
    if (!(fds[0].revents & (POLLIN | POLLHUP | POLLERR))) continue;
    char buf[65536];
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // the broker is gone: write what is queued, then exit
    in.append(buf, static_cast<size_t>(n));
    size_t pos = 0, used = 0;
    while (auto frame = wire::next_frame(std::string_view(in).substr(pos), &used)) {
      pos += used;
      std::optional<StoreJob> job = frame->tag == wire::Tag::job ? wire::get_job(frame->body) : std::nullopt;
      if (job) {
        worker.submit(std::move(*job));
        continue;
      }
      if (frame->tag == wire::Tag::metrics) {
        if (auto samples = wire::get_metrics(frame->body)) {
          board.set_broker(std::move(*samples));
          continue;
        }
      }
      if (frame->tag != wire::Tag::stop)
        wire::put_event(out, LogLine{LogLevel::error, "iotgate: the store process got a malformed message; exiting"});
      running = false;
      break;
    }
    if (used == SIZE_MAX) {
      wire::put_event(out, LogLine{LogLevel::error, "iotgate: the store process got a malformed frame; exiting"});
      running = false;
    }
    in.erase(0, pos);
  }
  std::string last = out;  // a complaint from the loop above, if any
  worker.stop();           // writes what is queued while Redis answers
  send_events();
  last += out;
  wire::put_held(last, worker.held_writes());
  send_all(fd, last, doorbell);
  _exit(0);
}

}  // namespace

// ---- the broker's side

StoreProcess::StoreProcess(const Config& config, MetricsServer metrics_server)
    : config_(config), metrics_server_(std::move(metrics_server)) {}

StoreProcess::~StoreProcess() {
  if (pid_ > 0) {
    std::vector<LogLine> unused;
    stop(2000ms, unused);
  }
  if (doorbell_) munmap(doorbell_, 4096);
}

bool StoreProcess::start(std::string* error) {
  if (!doorbell_) {
    void* page = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (page == MAP_FAILED) {
      *error = errno_text("mmap");
      return false;
    }
    doorbell_ = new (page) std::atomic<uint64_t>(0);
  }
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    *error = errno_text("socketpair");
    return false;
  }
  pid_t pid = fork();
  if (pid < 0) {
    *error = errno_text("fork");
    ::close(sv[0]);
    ::close(sv[1]);
    return false;
  }
  if (pid == 0) {
    ::close(sv[0]);
    run_store_process(config_, sv[1], doorbell_, metrics_server_);
  }
  ::close(sv[1]);
  fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
  fd_ = sv[0];  // the rest of the receiving state is as close_socket() (or the constructor) left it
  pid_ = pid;
  seen_ = doorbell_->load(std::memory_order_acquire);
  started_ = next_check_ = Clock::now();
  return true;
}

void StoreProcess::submit(const StoreJob& job) {
  if (unsent_full()) {
    ++dropped_jobs_;
    return;
  }
  wire::put_job(out_, job);
  ++submitted_;
  if (job.type != StoreJob::Type::touch_device || job.token) urgent_ = true;
}

void StoreProcess::report_metrics(const MetricSamples& samples) {
  if (unsent_full()) return;  // a stuck store process: the next second sends them again
  wire::put_metrics(out_, samples);
  urgent_ = true;
}

void StoreProcess::flush_when_due() {
  const Clock::time_point now = Clock::now();
  if (now - window_start_ >= kFlushGap) {
    storm_ = submitted_ - window_submitted_ >= kStormJobs;
    window_start_ = now;
    window_submitted_ = submitted_;
  }
  if (unsent_bytes() == 0) return;
  if (storm_ && !urgent_ && unsent_bytes() < kFlushBytes && now - last_flush_ < kFlushGap) return;
  last_flush_ = now;
  flush();
}

void StoreProcess::flush() {
  while (fd_ >= 0 && out_pos_ < out_.size()) {
    ssize_t n = ::send(fd_, out_.data() + out_pos_, out_.size() - out_pos_, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      out_pos_ += static_cast<size_t>(n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      if (!(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))) eof_ = true;  // drain() notices
      break;
    }
  }
  if (out_pos_ == out_.size()) {
    out_.clear();
    out_pos_ = 0;
    urgent_ = false;
  }
}

void StoreProcess::read_available() {
  if (in_pos_ > 0) {
    in_.erase(0, in_pos_);
    in_pos_ = 0;
  }
  more_ = false;
  size_t used = 0;
  while (fd_ >= 0 && !eof_) {
    // Enough read ahead, unless what is read holds no whole frame yet (a frame larger than kReadAhead).
    if (in_.size() >= kReadAhead && wire::next_frame(in_, &used)) {
      more_ = true;
      break;
    }
    char buf[65536];  // not in_.resize(): that would zero 64 KiB on the broker thread for every read
    ssize_t n = ::recv(fd_, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) {
      in_.append(buf, static_cast<size_t>(n));
    } else if (n == 0) {
      eof_ = true;
    } else if (errno != EINTR) {
      if (errno != EAGAIN && errno != EWOULDBLOCK) eof_ = true;
      break;
    }
  }
}

bool StoreProcess::take(const wire::Frame& frame, std::vector<StoreEvent>& out, std::optional<uint64_t>* held) {
  if (frame.tag == wire::Tag::held) {
    auto n = wire::get_held(frame.body);
    if (n && held) *held = n;
    return n.has_value();
  }
  std::optional<WorkerEvent> event = wire::get_event(frame.tag, frame.body);
  if (!event) return false;
  if (auto* record = std::get_if<LoadRecord>(&*event)) {
    bool end = record->kind == LoadRecord::Kind::end;
    builder_.add(std::move(*record));
    if (end) {
      out.emplace_back(builder_.finish());
      loaded_ = true;
    }
    return true;
  }
  std::visit(
      [&out](auto&& e) {
        if constexpr (!std::is_same_v<std::decay_t<decltype(e)>, LoadRecord>) out.emplace_back(std::move(e));
      },
      std::move(*event));
  return true;
}

// Parses whole frames from in_ until `deadline`; false when one is malformed.
bool StoreProcess::parse(std::vector<StoreEvent>& out, Clock::time_point deadline, std::optional<uint64_t>* held) {
  backlog_ = false;
  size_t used = 0;
  for (int n = 1;; ++n) {
    auto frame = wire::next_frame(std::string_view(in_).substr(in_pos_), &used);
    if (used == SIZE_MAX) return false;
    if (!frame) return true;
    in_pos_ += used;
    if (!take(*frame, out, held)) return false;
    if (n % 32 == 0 && Clock::now() >= deadline) {  // a load's records cost up to ~40 us each on a busy machine
      backlog_ = true;
      return true;
    }
  }
}

std::vector<StoreEvent> StoreProcess::drain(std::chrono::milliseconds budget) {
  std::vector<StoreEvent> out;
  if (fd_ < 0 && pid_ < 0) {
    // A store process died: start the next one when its delay is over.
    if (Clock::now() < next_start_) return out;
    std::string error;
    if (start(&error)) {
      out.emplace_back(LogLine{LogLevel::notice, "iotgate: store process " + std::to_string(pid_) + " started"});
    } else {
      next_start_ = Clock::now() + restart_delay_;
      out.emplace_back(LogLine{LogLevel::error, "iotgate: cannot start the store process (" + error + ")"});
    }
    return out;
  }
  const uint64_t bell = doorbell_->load(std::memory_order_acquire);
  const auto now = Clock::now();
  const bool check = now >= next_check_;
  if (bell == seen_ && !backlog_ && !more_ && !check && !eof_) return out;
  seen_ = bell;
  if (check) next_check_ = now + kHealthCheck;
  if (dropped_jobs_) {
    out.emplace_back(LogLine{LogLevel::warning, "iotgate: the store process is not reading; dropped " +
                                                    std::to_string(dropped_jobs_) + " writes"});
    dropped_jobs_ = 0;
  }
  read_available();
  loaded_ = false;
  const bool parsed = parse(out, now + budget, nullptr);
  if (loaded_ && !backlog_) release_load_buffers();
  if (!parsed) {
    lose("sent a malformed message", out);
  } else if (eof_ && !backlog_) {
    lose("went away", out);
  } else if (check && waitpid(pid_, nullptr, WNOHANG) == pid_) {
    pid_ = -1;  // reaped: lose() must not wait for it again
    lose("exited", out);
  }
  return out;
}

std::vector<StoreEvent> StoreProcess::wait_for_load(std::chrono::milliseconds limit) {
  std::vector<StoreEvent> out;
  const auto deadline = Clock::now() + limit;
  auto trouble = [&out](size_t from) {
    for (size_t i = from; i < out.size(); ++i)
      if (auto* line = std::get_if<LogLine>(&out[i]); line && line->level <= LogLevel::warning) return true;
    return false;
  };
  loaded_ = false;
  while (fd_ >= 0 && !eof_ && !loaded_) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) break;
    pollfd p{fd_, POLLIN, 0};
    if (!more_) poll(&p, 1, static_cast<int>(std::min<int64_t>(left, 100)));
    read_available();
    const size_t before = out.size();
    if (!parse(out, Clock::time_point::max(), nullptr)) {
      lose("sent a malformed message", out);
      break;
    }
    if (trouble(before)) break;
  }
  if (loaded_) release_load_buffers();
  return out;
}

void StoreProcess::release_load_buffers() {
  in_.erase(0, in_pos_);
  in_pos_ = 0;
  in_.shrink_to_fit();
  malloc_trim(0);
}

void StoreProcess::lose(const std::string& why, std::vector<StoreEvent>& out) {
  std::string how;
  if (pid_ > 0) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &status, 0);
    }
    how = WIFSIGNALED(status) ? " (signal " + std::to_string(WTERMSIG(status)) + ")"
                              : " (exit status " + std::to_string(WEXITSTATUS(status)) + ")";
  }
  const auto now = Clock::now();
  // One that ran for a while is restarted at once; one that keeps dying, later and later.
  restart_delay_ = now - started_ > 60s ? std::chrono::milliseconds(0) : std::max(2 * restart_delay_, 1000ms);
  restart_delay_ = std::min<std::chrono::milliseconds>(restart_delay_, 30s);
  next_start_ = now + restart_delay_;
  out.emplace_back(LogLine{LogLevel::error, "iotgate: the store process " + why + how +
                                                "; the writes it had not made are lost; starting another in " +
                                                std::to_string(restart_delay_.count() / 1000) + " s"});
  close_socket();
  pid_ = -1;
}

void StoreProcess::close_socket() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  eof_ = false;
  more_ = backlog_ = false;
  in_.clear();
  in_pos_ = 0;
  builder_.reset();
}

uint64_t StoreProcess::stop(std::chrono::milliseconds wait, std::vector<LogLine>& lines) {
  if (pid_ < 0) {  // none running (it died and the next has not started): what is queued here is not written
    uint64_t unsent = 0;
    size_t used = 0;
    for (std::string_view rest = std::string_view(out_).substr(out_pos_); wire::next_frame(rest, &used);
         rest.remove_prefix(used))
      ++unsent;
    out_.clear();
    out_pos_ = 0;
    return unsent;
  }
  const auto deadline = Clock::now() + wait;
  auto ms_left = [&] {
    return static_cast<int>(std::max<int64_t>(
        0, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count()));
  };
  wire::put_stop(out_);
  while (fd_ >= 0 && !eof_ && out_pos_ < out_.size() && ms_left() > 0) {
    pollfd p{fd_, POLLOUT, 0};
    poll(&p, 1, ms_left());
    flush();
  }
  // Until the store process says what it could not write, then exits.
  std::optional<uint64_t> held;
  std::vector<StoreEvent> events;
  while (fd_ >= 0 && !held && ms_left() > 0) {
    pollfd p{fd_, POLLIN, 0};
    poll(&p, 1, ms_left());
    read_available();
    if (!parse(events, Clock::time_point::max(), &held) || (eof_ && !held)) break;
  }
  for (auto& e : events)
    if (auto* line = std::get_if<LogLine>(&e)) lines.push_back(std::move(*line));
  if (!held)
    lines.push_back(LogLine{LogLevel::warning, "iotgate: the store process did not confirm its writes before stopping"});
  int status = 0;
  while (waitpid(pid_, &status, WNOHANG) == 0) {
    if (ms_left() == 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &status, 0);
      break;
    }
    usleep(5000);
  }
  close_socket();
  pid_ = -1;
  out_.clear();
  out_pos_ = 0;
  return held.value_or(0);
}

}  // namespace iotgate
