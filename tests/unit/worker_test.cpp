#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "iotgate/worker.h"

namespace iotgate {
namespace {

namespace fs = std::filesystem;

std::set<std::string> tasks() {
  std::set<std::string> out;
  for (const auto& e : fs::directory_iterator("/proc/self/task")) out.insert(e.path().filename());
  return out;
}
// Whether the descriptor table of thread `tid` of this process holds `fd`.
bool task_has_fd(const std::string& tid, int fd) {
  std::error_code ec;
  return fs::is_symlink("/proc/self/task/" + tid + "/fd/" + std::to_string(fd), ec);
}

// The broker's socket calls pay for every thread that shares its descriptor table (see use_own_descriptor_table):
// the worker's threads must not see the broker's descriptors.
TEST(StoreWorker, ThreadsDoNotShareTheBrokersDescriptorTable) {
  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  const std::string main_tid = std::to_string(gettid());
  ASSERT_TRUE(task_has_fd(main_tid, pipe_fds[0]));

  // The probe itself: an ordinary thread shares the table and sees the descriptor.
  {
    std::mutex m;
    std::condition_variable cv;
    bool done = false;
    std::string tid;
    std::thread plain([&] {
      std::unique_lock lock(m);
      tid = std::to_string(gettid());
      cv.notify_all();
      cv.wait(lock, [&] { return done; });
    });
    {
      std::unique_lock lock(m);
      cv.wait(lock, [&] { return !tid.empty(); });
      EXPECT_TRUE(task_has_fd(tid, pipe_fds[0]));
      done = true;
    }
    cv.notify_all();
    plain.join();
  }

  const std::set<std::string> before = tasks();
  Config config;
  config.redis_port = 1;  // nothing listens: the threads retry, which is all this test needs of them
  config.redis_timeout_ms = 200;
  StoreWorker worker(config);
  worker.start();
  std::set<std::string> threads;
  bool apart = false;
  for (auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
       !apart && std::chrono::steady_clock::now() < deadline;
       std::this_thread::sleep_for(std::chrono::milliseconds(10))) {
    threads.clear();
    for (const auto& t : tasks())
      if (!before.count(t)) threads.insert(t);
    apart = threads.size() == 2;
    for (const auto& t : threads) apart = apart && !task_has_fd(t, pipe_fds[0]);
  }
  EXPECT_TRUE(apart) << threads.size() << " new threads; each should have its own descriptor table";
  EXPECT_TRUE(task_has_fd(main_tid, pipe_fds[0])) << "closing the copies must leave the broker's descriptors open";
  worker.stop();
  close(pipe_fds[0]);
  close(pipe_fds[1]);
}

}  // namespace
}  // namespace iotgate
