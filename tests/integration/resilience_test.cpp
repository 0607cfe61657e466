// Options, Redis unreachable at start, Redis killed / stalled / restarted, broker restarted.
#include <signal.h>

#include <filesystem>
#include <fstream>

#include "stack.h"

namespace iotgate::test {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

TEST(PluginOptions, InvalidOrUnknownOptionRefusesToStart) {
  for (auto [opts, message] : std::vector<std::pair<std::map<std::string, std::string>, std::string>>{
           {{{"redis_port", "notaport"}}, "plugin_opt_redis_port must be a port"},
           {{{"redis_hots", "127.0.0.1"}}, "unknown option plugin_opt_redis_hots"},
           {{{"log_level", "chatty"}}, "plugin_opt_log_level must be"},
           {{{"clock_skew", "-5"}}, "plugin_opt_clock_skew must be"}}) {
    Broker broker(opts);
    bool started = true;
    try {
      broker.start();
    } catch (const std::exception&) {
      started = false;
    }
    if (started) {
      EXPECT_TRUE(broker.wait_for_log("never", milliseconds(500)) || !broker.running());
    }
    EXPECT_FALSE(broker.running()) << message;
    std::string all = broker.log() + read_file(broker.output_path());
    EXPECT_NE(all.find("iotgate: refusing to start: " + message), std::string::npos) << all;
  }
}

TEST(PluginOptions, PerListenerSettingsTrueRefusesToStart) {
  Broker broker({}, true, {"per_listener_settings true"});
  try {
    broker.start();
  } catch (const std::exception&) {
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  while (broker.running() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(broker.running());
  std::string all = broker.log() + read_file(broker.output_path());
  EXPECT_NE(all.find("iotgate: refusing to start: per_listener_settings true"), std::string::npos) << all;
}

TEST(RedisAtStart, UnreachableRedisIsNotFatalAndTheDataLoadsWhenItComes) {
  RedisServer redis;
  Broker broker({{"redis_port", std::to_string(redis.port())}, {"redis_timeout_ms", "300"}});
  const auto started = std::chrono::steady_clock::now();
  broker.start();  // Redis is not running yet
  // The broker does not sit out plugin_opt_load_wait (30 s): the store process's warning ends the wait.
  EXPECT_LT(std::chrono::steady_clock::now() - started, seconds(5));
  EXPECT_TRUE(broker.wait_for_log("cannot load from redis", std::chrono::seconds(5)));
  EXPECT_TRUE(broker.wait_for_log("opening the listeners before the first load"));
  EXPECT_TRUE(broker.running());
  V2Creds c = v2_creds(kPid, kEui, kSecret, 0, 1);
  {
    MqttClient dev(c.client_id);
    EXPECT_EQ(dev.connect(broker.port(), c.username, c.password), 135);
    EXPECT_TRUE(broker.wait_for_log("device data not loaded from Redis yet"));
  }
  redis.start();
  ASSERT_EQ(run_cli(redis, {"product", "add", "lierda", "--openid", kOpenid, "--product-id", kPid, "--product-key",
                            kKey, "--auth-type", "1"}).exit_code, 0);
  ASSERT_EQ(run_cli(redis, {"device", "add", "lierda", "--product-id", kPid, "--node-eui", kEui, "--secret", kSecret})
                .exit_code, 0);
  EXPECT_TRUE(broker.wait_for_log("iotgate: loaded", std::chrono::seconds(10)));
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  int rc = -1;
  while (rc != 0 && std::chrono::steady_clock::now() < deadline) {
    MqttClient dev(c.client_id);
    rc = dev.connect(broker.port(), c.username, c.password);
  }
  EXPECT_EQ(rc, 0);
}

// A fleet reconnecting to a restarted broker finds every device known: the first load comes before the listeners.
TEST(RedisAtStart, TheListenersOpenOnceTheDevicesAreLoaded) {
  RedisServer redis;
  redis.start();
  ASSERT_EQ(run_cli(redis, {"product", "add", "lierda", "--openid", kOpenid, "--product-id", kPid, "--product-key",
                            kKey, "--auth-type", "1"}).exit_code, 0);
  ASSERT_EQ(run_cli(redis, {"device", "add", "lierda", "--product-id", kPid, "--node-eui", kEui, "--secret", kSecret})
                .exit_code, 0);
  V2Creds c = v2_creds(kPid, kEui, kSecret, 0, 1);
  for (const char* wait : {"30", "0"}) {
    Broker broker({{"redis_port", std::to_string(redis.port())}, {"load_wait", wait}});
    broker.start();
    if (std::string(wait) == "30") {
      // The first connection attempt, made as soon as the port answers, is accepted.
      MqttClient dev(c.client_id);
      EXPECT_EQ(dev.connect(broker.port(), c.username, c.password), 0);
      const std::string log = broker.log();
      const size_t loaded = log.find("iotgate: loaded"), listening = log.find("Opening ipv4 listen socket");
      ASSERT_NE(loaded, std::string::npos) << log;
      ASSERT_NE(listening, std::string::npos) << log;
      EXPECT_LT(loaded, listening) << log;
    } else {
      // Not waiting: the listeners open at once and the load follows in TICKs.
      EXPECT_TRUE(broker.wait_for_log("iotgate: loaded"));
      MqttClient dev(c.client_id);
      EXPECT_EQ(dev.connect(broker.port(), c.username, c.password), 0);
      EXPECT_FALSE(broker.wait_for_log("opening the listeners before the first load", milliseconds(0)));
    }
  }
}

class RedisOutageTest : public StackTest {
 protected:
  void seed() override {
    add_lierda_product(kPid, 1);
    add_lierda_device(kPid, kEui, kSecret);
    cli({"account", "add", "app", "--password", "app-pw", "--allow", "read /sys/#"});
  }
  const std::string uplink = "/sys/" + kOpenid + "/" + kPid + "/" + kEui + "/uplink";
  const std::string offline_key = "iotgate:last_offline:" + kPid;  // device -> last offline time
  // The device's stored last offline time once it reaches `ts` (a held write landing), or what is stored after
  // 10 s ("" for nothing).
  std::string offline_time_reaching(int64_t ts) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    std::string offline;
    while (std::chrono::steady_clock::now() < deadline) {
      offline = redis.cli({"HGET", offline_key, kEui});
      if (!offline.empty() && std::stoll(offline) >= ts) break;
      std::this_thread::sleep_for(milliseconds(100));
    }
    return offline;
  }
};

TEST_F(RedisOutageTest, KnownDevicesKeepWorkingWhileRedisIsDownAndHeldWritesLandWhenItReturns) {
  auto app = connect("app:1", "app", "app-pw");
  ASSERT_LT(app->subscribe("/sys/#", 1), 128);
  redis.kill();
  EXPECT_TRUE(log_has("lost redis|redis unreachable", std::chrono::seconds(5)));
  int64_t ts = unix_now() - 1;
  {
    V2Creds c = v2_creds(kPid, kEui, kSecret, 1, ts);
    auto t0 = std::chrono::steady_clock::now();
    auto dev = connect_v2(c);
    EXPECT_LT(std::chrono::steady_clock::now() - t0, milliseconds(1000));
    EXPECT_EQ(dev->publish(uplink, "while-redis-down", 1), 0);
    EXPECT_TRUE(app->wait_message(uplink));
    dev->disconnect();
  }
  // The offline time was recorded in memory: the password cannot be replayed even with Redis gone.
  V2Creds replay = v2_creds(kPid, kEui, kSecret, 1, ts);
  connect_v2(replay, 135);
  std::this_thread::sleep_for(milliseconds(300));
  redis.start();  // same port, data from the AOF
  EXPECT_TRUE(log_has("redis reachable again|iotgate: reloaded", std::chrono::seconds(10)));
  std::string offline = offline_time_reaching(ts);
  ASSERT_FALSE(offline.empty()) << "held write never applied";
  EXPECT_GE(std::stoll(offline), ts);
  EXPECT_EQ(redis.cli({"HGET", "iotgate:product:" + kPid, "protocol"}), "lierda");  // nothing stored was lost
  connect_v2(replay, 135);
  // And the plugin follows changes again.
  cli({"device", "disable", kPid, kEui});
  std::this_thread::sleep_for(milliseconds(1100));
  connect_v2(v2_creds(kPid, kEui, kSecret, 1, unix_now()), 135);
}

// Redis frozen (SIGSTOP) with a 60 s command timeout: any Redis call on the broker thread would freeze the whole
// broker for a minute. Logins, publishes and deliveries must go on (each step has the harness's 5 s timeout).
class StalledRedisTest : public RedisOutageTest {
 protected:
  std::map<std::string, std::string> plugin_options() override { return {{"redis_timeout_ms", "60000"}}; }
};

TEST_F(StalledRedisTest, StalledRedisNeverStallsTheBroker) {
  auto app = connect("app:1", "app", "app-pw");
  ASSERT_LT(app->subscribe("/sys/#", 1), 128);
  redis.pause();
  for (int i = 0; i < 20; ++i) {
    auto dev = connect_v2(v2_creds(kPid, kEui, kSecret, 0, i));
    ASSERT_TRUE(dev->connected()) << "login " << i << " stalled";
    EXPECT_EQ(dev->publish(uplink, "m" + std::to_string(i), 1), 0);
    EXPECT_TRUE(app->wait_message(uplink));
    dev->disconnect();
  }
  // A refused login and an ACL denial are answered as well.
  connect_v2(v2_creds(kPid, kEui, "00000000000000000000000000000000", 0, 1), 135);
  redis.resume();
  EXPECT_TRUE(broker->running());
}

// Found by CI: a restarted Redis answers LOADING while it reads its AOF, and a held login/logout time that met
// that answer was dropped as if Redis had refused it. Here the load takes seconds (20,000 filler keys, 0.2 ms
// each; Redis answers, LOADING, every 1,024 keys), longer than the writer's longest backoff, so its first attempt
// after the restart meets LOADING.
TEST_F(RedisOutageTest, HeldWritesSurviveARedisStillLoadingItsData) {
  redis.cli({"EVAL", "for i = 1, 20000 do redis.call('SET', 'filler:' .. i, 'x') end", "0"});
  redis.add_start_args({"--key-load-delay", "200"});
  redis.stop();  // SIGTERM: the filler is in the AOF
  ASSERT_TRUE(log_has("lost redis|redis unreachable", std::chrono::seconds(5)));
  int64_t ts = unix_now() - 1;
  {
    auto dev = connect_v2(v2_creds(kPid, kEui, kSecret, 1, ts));
    dev->disconnect();
  }
  std::this_thread::sleep_for(milliseconds(300));
  auto restarted = std::chrono::steady_clock::now();
  redis.start();  // returns once PING answers PONG, after the load
  EXPECT_GT(std::chrono::steady_clock::now() - restarted, std::chrono::seconds(2)) << "Redis loaded too fast";
  std::string offline = offline_time_reaching(ts);
  ASSERT_FALSE(offline.empty()) << "held write never applied";
  EXPECT_GE(std::stoll(offline), ts);
}

// A failover demotes the primary the plugin writes to: every write then gets READONLY. The writes must be held
// (login/logout times are replay protection), not dropped as refused, and land once a primary takes them.
TEST_F(RedisOutageTest, HeldWritesSurviveAPrimaryDemotedToAReplica) {
  redis.cli({"REPLICAOF", "127.0.0.1", "1"});  // a replica of nobody: serves its data, refuses writes
  int64_t ts = unix_now() - 1;
  {
    auto dev = connect_v2(v2_creds(kPid, kEui, kSecret, 1, ts));
    dev->disconnect();
  }
  EXPECT_TRUE(log_has("READONLY", std::chrono::seconds(5)));
  std::this_thread::sleep_for(milliseconds(500));
  EXPECT_EQ(redis.cli({"HGET", offline_key, kEui}), "");  // not written yet
  connect_v2(v2_creds(kPid, kEui, kSecret, 1, ts), 135);  // and not replayable meanwhile
  redis.cli({"REPLICAOF", "NO", "ONE"});  // promoted again
  std::string offline = offline_time_reaching(ts);
  ASSERT_FALSE(offline.empty()) << "held write dropped";
  EXPECT_GE(std::stoll(offline), ts);
}

TEST_F(RedisOutageTest, BrokerRestartLosesNothing) {
  int64_t ts = unix_now() - 1;
  {
    auto dev = connect_v2(v2_creds(kPid, kEui, kSecret, 1, ts));
    dev->disconnect();
  }
  std::this_thread::sleep_for(milliseconds(300));
  size_t from = broker->log_size();
  broker->restart();
  ASSERT_TRUE(broker->wait_for_log("iotgate: loaded 1 products, 1 devices, 1 accounts", std::chrono::seconds(10), from));
  connect_v2(v2_creds(kPid, kEui, kSecret, 1, ts), 135);
  auto app = connect("app:1", "app", "app-pw");
  EXPECT_TRUE(app->connected());
}

TEST_F(RedisOutageTest, DevicesOnlineAtShutdownAreRecordedOffline) {
  int64_t ts = unix_now() - 1;
  V2Creds c = v2_creds(kPid, kEui, kSecret, 1, ts);
  auto dev = connect_v2(c);
  ASSERT_TRUE(dev->connected());
  broker->stop();  // SIGTERM with the device still connected
  std::string offline = redis.cli({"HGET", offline_key, kEui});
  ASSERT_FALSE(offline.empty()) << "the offline time of a device online at shutdown was lost";
  EXPECT_GE(std::stoll(offline), ts);
  size_t from = broker->log_size();
  broker->start();
  ASSERT_TRUE(broker->wait_for_log("iotgate: loaded", seconds(10), from));
  connect_v2(c, 135);  // the password captured before the restart cannot be replayed
}

// A Redis that comes back with its data (AOF) still holds the changes stream where the plugin stopped reading
// it: the plugin follows it from there, with no reload of everything (which would cost the broker thread a parse
// of every device).
TEST_F(RedisOutageTest, RedisRestartWithDevicesConnected) {
  auto dev = connect_v2(v2_creds(kPid, kEui, kSecret, 0, 1));
  auto app = connect("app:1", "app", "app-pw");
  ASSERT_LT(app->subscribe("/sys/#", 1), 128);
  size_t from = broker->log_size();
  redis.restart();
  EXPECT_TRUE(broker->wait_for_log("following its changes from where they stopped", seconds(10), from));
  EXPECT_EQ(broker->count_log("iotgate: reloaded", from), 0u);
  EXPECT_TRUE(dev->connected());
  EXPECT_EQ(dev->publish(uplink, "after-restart", 1), 0);
  EXPECT_TRUE(app->wait_message(uplink));
  // Changes go on being followed.
  cli({"device", "disable", kPid, kEui});
  EXPECT_TRUE(dev->wait_disconnected());
}

// Changes made while the plugin's connections were away are applied once it follows the stream again.
TEST_F(RedisOutageTest, ChangesMadeWhileThePluginWasAwayAreApplied) {
  auto dev = connect_v2(v2_creds(kPid, kEui, kSecret, 0, 1));
  size_t from = broker->log_size();
  redis.cli({"CLIENT", "KILL", "TYPE", "normal"});  // every connection, the plugin's among them
  cli({"device", "disable", kPid, kEui});
  EXPECT_TRUE(dev->wait_disconnected());
  EXPECT_TRUE(broker->wait_for_log("following its changes from where they stopped", seconds(5), from));
  EXPECT_EQ(broker->count_log("iotgate: reloaded", from), 0u);
  connect_v2(v2_creds(kPid, kEui, kSecret, 0, 1), 135);
}

// A stream trimmed past where the plugin was (or a Redis with other data) cannot be followed: everything is
// loaded again.
TEST_F(RedisOutageTest, RedisBackWithoutThePluginsPlaceInTheStreamIsReloaded) {
  auto dev = connect_v2(v2_creds(kPid, kEui, kSecret, 0, 1));
  redis.cli({"XTRIM", "iotgate:changes", "MAXLEN", "0"});
  size_t from = broker->log_size();
  redis.restart();
  EXPECT_TRUE(broker->wait_for_log("iotgate: reloaded", seconds(10), from));
  EXPECT_EQ(broker->count_log("following its changes from where they stopped", from), 0u);
  EXPECT_TRUE(dev->connected());
}

// ---- the store process (docs/architecture.md, "The store process")

std::string comm_of(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/comm");
  std::string s;
  std::getline(in, s);
  return s;
}
// The broker's children named iotgate-store (the sanitizer run's broker also has a `tee` of its stderr).
std::vector<pid_t> store_processes_of(pid_t broker) {
  std::ifstream in("/proc/" + std::to_string(broker) + "/task/" + std::to_string(broker) + "/children");
  std::vector<pid_t> out;
  for (pid_t child; in >> child;)
    if (comm_of(child) == "iotgate-store") out.push_back(child);
  return out;
}
size_t threads_of(pid_t pid) {
  size_t n = 0;
  for (const auto& e : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task")) n += !e.path().empty();
  return n;
}
// Gone: no such process, or a zombie nobody has reaped yet (an orphan's parent may be any process).
bool exited(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  if (!std::getline(in, stat)) return true;
  size_t close = stat.rfind(')');
  return close == std::string::npos || stat.substr(close + 2, 1) == "Z";
}

TEST_F(RedisOutageTest, RedisIoRunsInAStoreProcessAndTheBrokerKeepsOneThread) {
  EXPECT_EQ(threads_of(broker->pid()), 1u) << "the plugin gave the broker's process a thread";
  EXPECT_EQ(store_processes_of(broker->pid()).size(), 1u);
  int64_t ts = unix_now() - 1;
  connect_v2(v2_creds(kPid, kEui, kSecret, 1, ts))->disconnect();
  EXPECT_GE(std::stoll("0" + offline_time_reaching(ts)), ts) << "a logout time did not reach Redis";
  EXPECT_EQ(threads_of(broker->pid()), 1u);
}

TEST_F(RedisOutageTest, AKilledStoreProcessIsReplacedAndNothingElseStops) {
  auto app = connect("app:1", "app", "app-pw");
  ASSERT_LT(app->subscribe("/sys/#", 1), 128);
  auto before = connect_v2(v2_creds(kPid, kEui, kSecret, 0, 1));
  const pid_t first = store_processes_of(broker->pid()).at(0);
  size_t from = broker->log_size();
  ASSERT_EQ(kill(first, SIGKILL), 0);
  EXPECT_TRUE(broker->wait_for_log("iotgate: the store process went away \\(signal 9\\)", seconds(5), from));
  // While there is none, the connected device goes on: the broker needs no store process to decide.
  EXPECT_EQ(before->publish(uplink, "without-store", 1), 0);
  EXPECT_TRUE(app->wait_message(uplink));
  EXPECT_TRUE(broker->wait_for_log("iotgate: store process [0-9]+ started", seconds(5), from));
  EXPECT_TRUE(broker->wait_for_log("iotgate: (re)?loaded", seconds(10), from));
  auto kids = store_processes_of(broker->pid());
  ASSERT_EQ(kids.size(), 1u);
  EXPECT_NE(kids[0], first);
  // Writes go through the new one: a type-1 login's logout time lands in Redis.
  before->disconnect();
  int64_t ts = unix_now() + 1;
  std::this_thread::sleep_for(milliseconds(1100));
  connect_v2(v2_creds(kPid, kEui, kSecret, 1, ts))->disconnect();
  EXPECT_GE(std::stoll("0" + offline_time_reaching(ts)), ts);
  // And it follows changes: a device disabled now is refused.
  cli({"device", "disable", kPid, kEui});
  std::this_thread::sleep_for(milliseconds(1100));
  connect_v2(v2_creds(kPid, kEui, kSecret, 1, unix_now()), 135);
}

TEST_F(RedisOutageTest, AKilledBrokerLeavesNoStoreProcessAndItsWritesLand) {
  int64_t ts = unix_now() - 1;
  auto dev = connect_v2(v2_creds(kPid, kEui, kSecret, 1, ts));
  const pid_t store = store_processes_of(broker->pid()).at(0);
  // The login's write goes to the store process at the end of the broker's loop iteration (TICK) and waits
  // there for a batch (StoreWorker::kTouchDelay): kill the broker after the first, well before the second.
  std::this_thread::sleep_for(milliseconds(20));
  // SIGKILL to the broker alone (the harness's kill() takes the whole process group): no plugin cleanup runs.
  ASSERT_EQ(kill(broker->pid(), SIGKILL), 0);
  bool gone = false;
  for (int i = 0; i < 100 && !gone; ++i) {
    gone = exited(store);
    if (!gone) std::this_thread::sleep_for(milliseconds(50));
  }
  EXPECT_TRUE(gone) << "store process " << store << " outlived its broker";
  broker->kill();  // reaps it
  // The login time it had been handed reached Redis before it exited.
  std::string online = redis.cli({"HGET", "iotgate:last_online:" + kPid, kEui});
  ASSERT_FALSE(online.empty());
  EXPECT_GE(std::stoll(online), ts);
}

}  // namespace
}  // namespace iotgate::test
