// The store process and the messages it exchanges with the broker (wire.h, store_process.h).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <thread>

#include "iotgate/store_process.h"
#include "iotgate/wire.h"

namespace iotgate {
namespace {

using namespace std::chrono_literals;

// ---- the messages

// Encodes, splits off the frame and decodes: what the other process would get.
template <typename Put, typename Get>
auto round_trip(Put&& put, Get&& get) {
  std::string buffer;
  put(buffer);
  buffer += "trailing bytes of the next frame";
  size_t used = 0;
  auto frame = wire::next_frame(buffer, &used);
  EXPECT_TRUE(frame);
  EXPECT_EQ(used, buffer.size() - std::string("trailing bytes of the next frame").size());
  return get(*frame);
}

TEST(Wire, JobsCrossWhole) {
  StoreJob job;
  job.type = StoreJob::Type::krt_issue;
  job.token = 0x0123456789ABCDEFull;
  job.durable = true;
  job.product = "KP1";
  job.device = std::string("dev\0ice", 7);  // any bytes
  job.fields = {{"a", "1"}, {"session_key", std::string(300, 'k')}, {"", ""}};
  job.create = true;
  job.origin = "auto";
  job.candidate_secret = "S3CR3T";
  job.limit = -5;
  auto back = round_trip([&](std::string& b) { wire::put_job(b, job); },
                         [](const wire::Frame& f) {
                           EXPECT_EQ(f.tag, wire::Tag::job);
                           return wire::get_job(f.body);
                         });
  ASSERT_TRUE(back);
  EXPECT_EQ(back->type, job.type);
  EXPECT_EQ(back->token, job.token);
  EXPECT_EQ(back->durable, job.durable);
  EXPECT_EQ(back->product, job.product);
  EXPECT_EQ(back->device, job.device);
  EXPECT_EQ(back->fields, job.fields);
  EXPECT_EQ(back->create, job.create);
  EXPECT_EQ(back->origin, job.origin);
  EXPECT_EQ(back->candidate_secret, job.candidate_secret);
  EXPECT_EQ(back->limit, job.limit);
}

// A touch (most jobs) crosses as its own fields, not as a map of strings.
TEST(Wire, TouchesCrossWhole) {
  StoreJob job;
  job.type = StoreJob::Type::touch_device;
  job.durable = true;
  job.touch = Touch{.product = "KP1", .device = std::string("d\0v", 3), .last_online = 1800000001,
                    .last_offline = -2, .activated = true, .claim = "client id", .claim_at = 1800000001234,
                    .alive = true};
  auto back = round_trip([&](std::string& b) { wire::put_job(b, job); },
                         [](const wire::Frame& f) { return wire::get_job(f.body); });
  ASSERT_TRUE(back);
  EXPECT_EQ(back->type, StoreJob::Type::touch_device);
  EXPECT_TRUE(back->durable);
  const Touch& t = back->touch;
  EXPECT_EQ(t.product, "KP1");
  EXPECT_EQ(t.device, std::string("d\0v", 3));
  EXPECT_EQ(t.last_online, 1800000001);
  EXPECT_EQ(t.last_offline, -2);
  EXPECT_TRUE(t.activated);
  EXPECT_EQ(t.claim, "client id");
  EXPECT_EQ(t.claim_at, 1800000001234);
  EXPECT_TRUE(t.alive);
  std::string frame;
  wire::put_job(frame, job);
  frame.pop_back();  // one byte short: refused
  EXPECT_FALSE(wire::get_job(std::string_view(frame).substr(5)));
}

TEST(Wire, EveryEventCrossesWhole) {
  auto cross = [](const WorkerEvent& e) {
    return round_trip([&](std::string& b) { wire::put_event(b, e); },
                      [](const wire::Frame& f) { return wire::get_event(f.tag, f.body); });
  };
  auto rec = cross(LoadRecord{LoadRecord::Kind::device, "P1", "D1", {{"secret", "x"}, {"enabled", "1"}}});
  ASSERT_TRUE(rec);
  const auto& r = std::get<LoadRecord>(*rec);
  EXPECT_EQ(r.kind, LoadRecord::Kind::device);
  EXPECT_EQ(r.id, "P1");
  EXPECT_EQ(r.member, "D1");
  EXPECT_EQ(r.fields, (Fields{{"secret", "x"}, {"enabled", "1"}}));

  auto gone = cross(EntityUpdate{EntityUpdate::Kind::account, "ops", std::nullopt});
  ASSERT_TRUE(gone);
  EXPECT_EQ(std::get<EntityUpdate>(*gone).kind, EntityUpdate::Kind::account);
  EXPECT_FALSE(std::get<EntityUpdate>(*gone).fields);
  auto changed = cross(EntityUpdate{EntityUpdate::Kind::task, "t1", Fields{{"status", "1"}}});
  EXPECT_EQ(*std::get<EntityUpdate>(*changed).fields, (Fields{{"status", "1"}}));

  auto res = cross(StoreResult{42, false, "limit", Fields{{"origin", "auto"}}});
  ASSERT_TRUE(res);
  EXPECT_EQ(std::get<StoreResult>(*res).token, 42u);
  EXPECT_FALSE(std::get<StoreResult>(*res).ok);
  EXPECT_EQ(std::get<StoreResult>(*res).error, "limit");
  EXPECT_EQ(*std::get<StoreResult>(*res).device, (Fields{{"origin", "auto"}}));

  auto line = cross(LogLine{LogLevel::warning, "iotgate: redis unreachable"});
  EXPECT_EQ(std::get<LogLine>(*line).level, LogLevel::warning);
  EXPECT_EQ(std::get<LogLine>(*line).text, "iotgate: redis unreachable");

  auto cmd = cross(Command{{{"kind", "push"}, {"task", "t1"}}});
  EXPECT_EQ(std::get<Command>(*cmd).fields.at("task"), "t1");

  auto held = round_trip([](std::string& b) { wire::put_held(b, 7); },
                         [](const wire::Frame& f) { return wire::get_held(f.body); });
  EXPECT_EQ(held, 7u);
}

TEST(Wire, PartialOrBrokenInputIsRefused) {
  std::string buffer;
  StoreJob job;
  job.product = "P";
  wire::put_job(buffer, job);
  size_t used = 1;
  for (size_t n = 0; n < buffer.size(); ++n) {
    EXPECT_FALSE(wire::next_frame(std::string_view(buffer).substr(0, n), &used)) << n;
    EXPECT_EQ(used, 0u);
  }
  // A body cut short, or with bytes left over, or with an out-of-range kind, is not a job.
  auto frame = wire::next_frame(buffer, &used);
  ASSERT_TRUE(frame);
  for (size_t n = 0; n < frame->body.size(); ++n) EXPECT_FALSE(wire::get_job(frame->body.substr(0, n))) << n;
  EXPECT_FALSE(wire::get_job(std::string(frame->body) + "x"));
  std::string bad_type(frame->body);
  bad_type[0] = 99;
  EXPECT_FALSE(wire::get_job(bad_type));
  // A string length beyond the body, and a length that is no frame at all.
  std::string line;
  wire::put_event(line, LogLine{LogLevel::error, "abc"});
  line[6 + 8 - 1] = 0x7F;  // the top byte of the text's length
  EXPECT_FALSE(wire::get_event(wire::Tag::log, std::string_view(line).substr(5)));
  EXPECT_FALSE(wire::next_frame(std::string("\0\0\0\0x", 5), &used));
  EXPECT_EQ(used, SIZE_MAX);
  EXPECT_FALSE(wire::next_frame(std::string("\xFF\xFF\xFF\xFFx", 5), &used));
  EXPECT_EQ(used, SIZE_MAX);
  EXPECT_FALSE(wire::get_event(wire::Tag::job, ""));
}

// ---- the load

TEST(SnapshotBuilder, ParsesWhatALoadReadsAndSkipsWhatCannotBeParsed) {
  using Kind = LoadRecord::Kind;
  SnapshotBuilder b;
  b.add({Kind::begin, {}, {}, {}});
  b.add({Kind::product, "STALE", {}, {{"protocol", "krt"}, {"enabled", "1"}, {"product_secret", "s"}}});
  b.add({Kind::begin, {}, {}, {}});  // a load that starts again drops what came before
  b.add({Kind::product, "P1", {}, {{"protocol", "krt"}, {"enabled", "1"}, {"product_secret", "s"}}});
  b.add({Kind::device, "P1", "D1", {{"enabled", "1"}, {"secret", "x"}, {"last_online", "100"}}});
  b.add({Kind::product, "BAD", {}, {{"protocol", "nonsense"}}});
  b.add({Kind::device, "BAD", "D2", {{"enabled", "1"}, {"secret", "y"}}});
  b.add({Kind::account, "ops", {}, {{"superuser", "1"}}});
  b.add({Kind::ota_task, "BROKEN", {}, {{"product", "P1"}}});
  b.add({Kind::ota_progress, "BROKEN", {}, {{"D1", R"({"state":"notified"})"}}});
  b.add({Kind::end, {}, {}, {}});
  Snapshot s = b.finish();
  ASSERT_TRUE(s.registry);
  EXPECT_FALSE(s.registry->product("STALE"));
  ASSERT_TRUE(s.registry->product("P1"));
  ASSERT_TRUE(s.registry->device("P1", "D1"));
  EXPECT_EQ(s.registry->device("P1", "D1")->last_online, 100);
  EXPECT_FALSE(s.registry->product("BAD"));
  EXPECT_FALSE(s.registry->device("BAD", "D2"));  // a malformed product takes its devices with it
  EXPECT_TRUE(s.registry->account("ops"));
  EXPECT_TRUE(s.ota.tasks.empty());
  EXPECT_TRUE(s.ota.progress.empty());
  EXPECT_EQ(s.problems.size(), 2u);  // the product and the task
  EXPECT_EQ(b.finish().registry->product_count(), 0u);  // finish() starts over
}

// ---- the process

std::set<std::string> tasks_of_this_process() {
  std::set<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/task")) out.insert(e.path().filename());
  return out;
}

// The process's name, once it has named itself (it does so right after the fork): waits up to 2 s for `want`.
std::string comm_of(pid_t pid, const std::string& want = "iotgate-store") {
  std::string s;
  for (int i = 0; i < 200; ++i) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/comm");
    std::getline(in, s);
    if (s == want) break;
    std::this_thread::sleep_for(10ms);
  }
  return s;
}

Config unreachable_redis() {
  Config c;
  c.redis_port = 1;  // nothing listens: jobs fail or are held, which is all these tests need
  c.redis_timeout_ms = 200;
  return c;
}

// Drains until `found` says yes or 10 s pass; returns whether it did.
template <typename Pred>
bool drain_until(StoreProcess& store, std::vector<StoreEvent>& seen, Pred&& found) {
  for (auto deadline = std::chrono::steady_clock::now() + 10s; std::chrono::steady_clock::now() < deadline;) {
    store.flush();
    for (auto& e : store.drain()) {
      seen.push_back(std::move(e));
      if (found(seen.back())) return true;
    }
    std::this_thread::sleep_for(5ms);
  }
  return false;
}
bool says(const StoreEvent& e, const std::string& text) {
  auto* line = std::get_if<LogLine>(&e);
  return line && line->text.find(text) != std::string::npos;
}

// The point of the store process: Redis I/O without a single thread in the broker's process.
TEST(StoreProcess, WorksApartFromTheBrokersProcessAndAnswersIt) {
  const auto before = tasks_of_this_process();
  StoreProcess store(unreachable_redis());
  std::string error;
  ASSERT_TRUE(store.start(&error)) << error;
  ASSERT_GT(store.pid(), 0);
  EXPECT_EQ(comm_of(store.pid()), "iotgate-store");

  std::vector<StoreEvent> seen;
  // Its watcher's complaint reaches this side as a log line.
  EXPECT_TRUE(drain_until(store, seen, [](const StoreEvent& e) { return says(e, "cannot load from redis"); }));
  // A job that someone waits for is answered "unavailable" at once while Redis is away.
  StoreJob ask;
  ask.type = StoreJob::Type::lierda_issue;
  ask.token = 77;
  ask.product = "P1";
  ask.device = "D1";
  store.submit(ask);
  EXPECT_TRUE(drain_until(store, seen, [](const StoreEvent& e) {
    auto* r = std::get_if<StoreResult>(&e);
    return r && r->token == 77 && !r->ok && r->error == "unavailable";
  }));
  EXPECT_EQ(tasks_of_this_process(), before) << "the broker's process got a thread";

  // A durable write is held while Redis is away, and counted when the store process stops.
  StoreJob touch;
  touch.type = StoreJob::Type::touch_device;
  touch.durable = true;
  touch.touch = Touch{.product = "P1", .device = "D1", .last_online = 1};
  store.submit(touch);
  std::vector<LogLine> lines;
  const pid_t pid = store.pid();
  EXPECT_EQ(store.stop(5s, lines), 1u);
  EXPECT_EQ(store.pid(), -1);
  EXPECT_EQ(kill(pid, 0), -1) << "the store process outlived stop()";
}

// In a login storm the broker writes login and logout times to the store process at most once per kFlushGap;
// everything else, and everything outside a storm, at once (flush_when_due).
TEST(StoreProcess, LoginTimesGoToTheStoreProcessInBatchesDuringAStorm) {
  using Clock = std::chrono::steady_clock;
  StoreProcess store(unreachable_redis());
  std::string error;
  ASSERT_TRUE(store.start(&error)) << error;
  StoreJob touch;
  touch.type = StoreJob::Type::touch_device;
  touch.durable = true;
  touch.touch = Touch{.product = "P1", .device = "D1", .last_online = 1};
  StoreJob ask;
  ask.type = StoreJob::Type::krt_issue;
  ask.token = 9;
  // No storm: writes in a row go at once (a heartbeat and a login, say).
  for (int i = 0; i < 3; ++i) {
    store.submit(touch);
    store.flush_when_due();
    EXPECT_EQ(store.unsent_bytes(), 0u) << i;
  }
  // A storm: many logins in each of several gaps (8 per TICK, a TICK every half millisecond).
  for (const auto start = Clock::now(); Clock::now() - start < 3 * StoreProcess::kFlushGap;) {
    for (int i = 0; i < 8; ++i) store.submit(touch);
    store.flush_when_due();
    std::this_thread::sleep_for(500us);
  }
  store.submit(ask);  // a device waiting for an answer: at once, with the touches before it
  const auto flushed = Clock::now();
  store.flush_when_due();
  EXPECT_EQ(store.unsent_bytes(), 0u);
  store.submit(touch);  // waits for the gap
  store.flush_when_due();
  EXPECT_GT(store.unsent_bytes(), 0u);
  while (store.unsent_bytes() > 0 && Clock::now() - flushed < 2s) store.flush_when_due();
  EXPECT_EQ(store.unsent_bytes(), 0u);
  EXPECT_GE(Clock::now() - flushed, StoreProcess::kFlushGap);
  // kFlushBytes gathered: at once.
  store.submit(ask);
  store.flush_when_due();
  size_t submitted_bytes = 0;
  while (store.unsent_bytes() < StoreProcess::kFlushBytes) {
    store.submit(touch);
    ASSERT_GT(store.unsent_bytes(), submitted_bytes);
    submitted_bytes = store.unsent_bytes();
  }
  store.flush_when_due();
  EXPECT_EQ(store.unsent_bytes(), 0u);
  // After a quiet gap the storm is over: at once again.
  std::this_thread::sleep_for(StoreProcess::kFlushGap + 2ms);
  store.flush_when_due();
  std::this_thread::sleep_for(StoreProcess::kFlushGap + 2ms);
  store.submit(touch);
  store.flush_when_due();
  EXPECT_EQ(store.unsent_bytes(), 0u);
  std::vector<LogLine> lines;
  store.stop(5s, lines);
}

TEST(StoreProcess, OneThatDiesIsReplaced) {
  StoreProcess store(unreachable_redis());
  std::string error;
  ASSERT_TRUE(store.start(&error)) << error;
  const pid_t first = store.pid();
  ASSERT_EQ(kill(first, SIGKILL), 0);
  std::vector<StoreEvent> seen;
  ASSERT_TRUE(drain_until(store, seen, [](const StoreEvent& e) { return says(e, "(signal 9)"); }));
  ASSERT_TRUE(drain_until(store, seen, [](const StoreEvent& e) { return says(e, "started"); }));
  EXPECT_GT(store.pid(), 0);
  EXPECT_NE(store.pid(), first);
  EXPECT_EQ(comm_of(store.pid()), "iotgate-store");
  // The new one works: it answers as the first did.
  StoreJob ask;
  ask.type = StoreJob::Type::krt_issue;
  ask.token = 5;
  store.submit(ask);
  EXPECT_TRUE(drain_until(store, seen, [](const StoreEvent& e) {
    auto* r = std::get_if<StoreResult>(&e);
    return r && r->token == 5;
  }));
  std::vector<LogLine> lines;
  store.stop(5s, lines);
}

// Stopping while none runs (it died, the next has not started yet): the jobs queued are counted as not written.
TEST(StoreProcess, StopWhileNoneRunsCountsTheJobsNotSent) {
  StoreProcess store(unreachable_redis());
  std::string error;
  ASSERT_TRUE(store.start(&error)) << error;
  ASSERT_EQ(kill(store.pid(), SIGKILL), 0);
  std::vector<StoreEvent> seen;
  ASSERT_TRUE(drain_until(store, seen, [](const StoreEvent& e) { return says(e, "(signal 9)"); }));
  ASSERT_EQ(store.pid(), -1);
  StoreJob touch;
  touch.type = StoreJob::Type::touch_device;
  touch.durable = true;
  store.submit(touch);
  store.submit(touch);
  std::vector<LogLine> lines;
  EXPECT_EQ(store.stop(1s, lines), 2u);
}

// The store process outlives no broker: when the broker's end of the socket closes, it writes what it holds and
// exits (here its parent is a short-lived process standing in for a broker killed with SIGKILL).
TEST(StoreProcess, ExitsWhenTheBrokerIsGone) {
  // Orphans come to this process (not to init), which can then see the store process exit and reap it.
  ASSERT_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  pid_t broker = fork();
  ASSERT_GE(broker, 0);
  if (broker == 0) {
    StoreProcess store(unreachable_redis());
    std::string error;
    if (!store.start(&error)) _exit(1);
    pid_t pid = store.pid();
    ssize_t w = write(pipe_fds[1], &pid, sizeof pid);
    (void)w;
    _exit(0);  // no stop(): as if killed
  }
  pid_t store_pid = 0;
  ASSERT_EQ(read(pipe_fds[0], &store_pid, sizeof store_pid), static_cast<ssize_t>(sizeof store_pid));
  waitpid(broker, nullptr, 0);
  bool gone = false;
  int status = 0;
  for (int i = 0; i < 500 && !gone; ++i) {
    gone = waitpid(store_pid, &status, WNOHANG) == store_pid;
    if (!gone) std::this_thread::sleep_for(10ms);
  }
  EXPECT_TRUE(gone) << "store process " << store_pid << " still runs without its broker";
  if (!gone) kill(store_pid, SIGKILL);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "it should exit by itself, status " << status;
  prctl(PR_SET_CHILD_SUBREAPER, 0);
  close(pipe_fds[0]);
  close(pipe_fds[1]);
}

}  // namespace
}  // namespace iotgate
