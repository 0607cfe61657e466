// Redis Sentinel (docs/deployment.md, "Redis Sentinel"): the plugin finds the primary through the sentinels, and
// when the primary dies it finds the new one (the sentinels' failover) by itself: known devices go on logging in
// and publishing, the writes held meanwhile land on the new primary, and an old primary that comes back (a replica
// now) is not used again.
#include <atomic>
#include <iostream>

#include "sentinel_set.h"
#include "stack.h"

namespace iotgate::test {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

double secs(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

TEST(SentinelOptions, BadOrIncompleteSentinelOptionsRefuseToStart) {
  for (auto [opts, message] : std::vector<std::pair<std::map<std::string, std::string>, std::string>>{
           {{{"redis_sentinels", "127.0.0.1:26379"}}, "plugin_opt_redis_sentinels needs plugin_opt_redis_master_name"},
           {{{"redis_master_name", "main"}}, "plugin_opt_redis_master_name needs plugin_opt_redis_sentinels"},
           {{{"redis_sentinels", "127.0.0.1:0"}, {"redis_master_name", "main"}}, "plugin_opt_redis_sentinels must be"}}) {
    Broker broker(opts);
    try {
      broker.start();
    } catch (const std::exception&) {
    }
    eventually([&] { return !broker.running(); }, seconds(3));
    EXPECT_FALSE(broker.running()) << message;
    std::string all = broker.log() + read_file(broker.output_path());
    EXPECT_NE(all.find("iotgate: refusing to start: " + message), std::string::npos) << all;
  }
}

class SentinelFailoverTest : public ::testing::Test {
 protected:
  static constexpr int kDevices = 4;
  const std::string pid = kPid;
  std::string eui(int i) const { return "SENTINEL" + std::to_string(i); }
  std::string secret(int i) const { return "326086233FAB8A96566796551EB1DF0" + std::to_string(i); }
  std::string uplink(int i) const { return "/sys/" + kOpenid + "/" + pid + "/" + eui(i) + "/uplink"; }
  const std::string held_eui = "SENTINELHELD";  // logs in and out once, while there is no primary
  const std::string held_secret = "326086233FAB8A96566796551EB1DFAA";

  void SetUp() override {
    set.start();
    // The data goes in through the sentinels too (the CLI's sentinel:// URI).
    cli({"product", "add", "lierda", "--openid", kOpenid, "--product-id", pid, "--product-key", kKey, "--auth-type", "1"});
    for (int i = 0; i < kDevices; ++i)
      cli({"device", "add", "lierda", "--product-id", pid, "--node-eui", eui(i), "--secret", secret(i)});
    cli({"device", "add", "lierda", "--product-id", pid, "--node-eui", held_eui, "--secret", held_secret});
    cli({"product", "add", "krt", "--product-id", "KP1", "--product-secret", "product-secret-1"});
    cli({"device", "add", "krt", "--product-id", "KP1", "--device-id", "KD1", "--secret", "kd1-secret"});
    cli({"account", "add", "app", "--password", "app-pw", "--allow", "read /sys/#"});
    ASSERT_EQ(set.server(0).cli({"HGET", "iotgate:product:" + pid, "protocol"}), "lierda");
    broker = std::make_unique<Broker>(std::map<std::string, std::string>{{"redis_sentinels", set.sentinel_list()},
                                                                         {"redis_master_name", SentinelSet::kMaster},
                                                                         {"redis_timeout_ms", "500"}});
    broker->start();
    ASSERT_TRUE(broker->wait_for_log("iotgate: loaded 2 products, 6 devices, 1 accounts", seconds(20))) << broker->log();
    EXPECT_TRUE(broker->wait_for_log("iotgate: started; redis sentinel master iotgate-main via 127\\.0\\.0\\.1:",
                                     seconds(1)));
    EXPECT_TRUE(broker->wait_for_log("redis primary of sentinel master iotgate-main: 127\\.0\\.0\\.1:" +
                                         std::to_string(set.server(0).port()),
                                     seconds(1)));
  }

  std::string cli(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {std::string(IOTGATE_SOURCE_DIR) + "/scripts/iotgate"};
    argv.insert(argv.end(), args.begin(), args.end());
    CommandResult r = run_command(argv, {{"IOTGATE_REDIS", set.uri()}, {"IOTGATE_PREFIX", "iotgate:"}});
    EXPECT_EQ(r.exit_code, 0) << "iotgate " << testing::PrintToString(args) << ": " << r.err;
    return r.out;
  }

  // A device logs in (type 0), publishes an uplink that the app must receive, and logs out; false (with a test
  // failure) when any step fails. *offline_from: a time its logout time must reach.
  bool round(int i, MqttClient& app, int64_t* offline_from) {
    V2Creds c = v2_creds(pid, eui(i), secret(i), 0, 1);
    MqttClient dev(c.client_id);
    int rc = dev.connect(broker->port(), c.username, c.password);
    EXPECT_EQ(rc, 0) << "login of " << eui(i);
    if (rc != 0) return false;
    std::string payload = "m" + std::to_string(++sent_);
    EXPECT_EQ(dev.publish(uplink(i), payload, 1), 0);
    bool delivered = false;
    auto deadline = Clock::now() + seconds(5);
    while (!delivered && Clock::now() < deadline) {
      auto m = app.wait_message(uplink(i), std::chrono::duration_cast<milliseconds>(deadline - Clock::now()));
      delivered = m && m->payload == payload;
    }
    EXPECT_TRUE(delivered) << "uplink " << payload << " of " << eui(i) << " not delivered";
    *offline_from = unix_now();
    dev.disconnect();
    return delivered;
  }

  // The server's stored logout time of a device (0 for none).
  static int64_t offline_on(RedisServer& s, const std::string& product, const std::string& device) {
    return std::stoll("0" + s.cli({"HGET", "iotgate:last_offline:" + product, device}));
  }

  SentinelSet set;
  std::unique_ptr<Broker> broker;
  int sent_ = 0;
};

TEST_F(SentinelFailoverTest, KilledPrimaryIsReplacedAndThePluginFollowsWithoutLosingWrites) {
  RedisServer& old_primary = set.server(0);
  RedisServer& replica = set.server(1);
  auto app = std::make_unique<MqttClient>("app:1");
  ASSERT_EQ(app->connect(broker->port(), "app", "app-pw"), 0);
  ASSERT_LT(app->subscribe("/sys/#", 1), 128);
  ASSERT_TRUE(eventually([&] { return SentinelSet::has_client(old_primary, "iotgate-watcher"); }, seconds(5)));

  // Before: every device works, and its logout time reaches the replica.
  std::map<int, int64_t> offline_before;
  for (int i = 0; i < kDevices; ++i) ASSERT_TRUE(round(i, *app, &offline_before[i]));
  ASSERT_TRUE(eventually(
      [&] {
        for (int i = 0; i < kDevices; ++i)
          if (offline_on(replica, pid, eui(i)) < offline_before[i]) return false;
        return true;
      },
      seconds(10)))
      << "the logout times never reached the replica";
  ASSERT_EQ(replica.cli({"HGET", "iotgate:device:KP1:KD1", "activated"}), "0");

  // The primary dies. At once, with no primary anywhere, a device logs in and out and the KRT device logs in for the
  // first time (which activates it): durable writes that must be held and land on the new primary.
  const auto killed = Clock::now();
  old_primary.kill();
  const int64_t held_from = unix_now();
  {
    V2Creds c = v2_creds(pid, held_eui, held_secret, 1, held_from);
    MqttClient dev(c.client_id);
    ASSERT_EQ(dev.connect(broker->port(), c.username, c.password), 0) << "a known device refused with Redis away";
    dev.disconnect();
  }
  auto krt = std::make_unique<MqttClient>("KP1.KD1");
  ASSERT_EQ(krt->connect(broker->port(), "KD1", "kd1-secret"), 0);
  EXPECT_EQ(krt->publish("/sys/KP1/KD1/thing/event/post", "during-failover", 1), 0);
  EXPECT_TRUE(app->wait_message("/sys/KP1/KD1/thing/event/post"));

  // Known devices go on logging in and publishing throughout; meanwhile (watched every 50 ms) the sentinels promote
  // the replica (promoted) and the plugin connects to it (followed: both of its connections are on it).
  std::optional<Clock::time_point> promoted, followed;
  std::atomic<bool> done{false};
  std::thread watch([&] {
    while (!done && Clock::now() - killed < seconds(60)) {
      if (!promoted && set.all_name(replica.port()) && SentinelSet::role(replica) == "master") promoted = Clock::now();
      if (promoted && SentinelSet::has_client(replica, "iotgate-watcher") &&
          SentinelSet::has_client(replica, "iotgate-writer")) {
        followed = Clock::now();
        break;
      }
      std::this_thread::sleep_for(milliseconds(50));
    }
    done = true;
  });
  std::map<int, int64_t> offline_during;
  int rounds = 0, failed = 0;
  while (!done) {
    for (int i = 0; i < kDevices; ++i, ++rounds)
      if (!round(i, *app, &offline_during[i])) ++failed;
  }
  watch.join();
  EXPECT_EQ(failed, 0) << "of " << rounds << " login/publish rounds during the failover";
  ASSERT_TRUE(promoted) << "the sentinels did not promote the replica within 60 s\n" << set.sentinel_log(0);
  ASSERT_TRUE(followed) << "the plugin is not on the new primary 60 s after the kill\n" << broker->log();
  std::cout << "[ timing   ] primary killed -> sentinels name the replica: " << secs(*promoted - killed)
            << " s; -> plugin on it: " << secs(*followed - killed) << " s (" << secs(*followed - *promoted)
            << " s after the promotion was seen); " << rounds << " rounds, " << failed << " failed\n";
  RecordProperty("kill_to_promotion_ms", std::to_string(std::chrono::duration_cast<milliseconds>(*promoted - killed).count()));
  RecordProperty("kill_to_plugin_ms", std::to_string(std::chrono::duration_cast<milliseconds>(*followed - killed).count()));
  EXPECT_LT(*followed - *promoted, seconds(10)) << "the plugin took too long to follow the failover";
  EXPECT_TRUE(broker->wait_for_log("redis primary of sentinel master iotgate-main: 127\\.0\\.0\\.1:" +
                                   std::to_string(replica.port()), seconds(5)));

  // The held writes landed on the new primary, and nothing stored before the failover is missing.
  RedisServer& primary = replica;
  EXPECT_TRUE(eventually([&] { return offline_on(primary, pid, held_eui) >= held_from; }, seconds(10)))
      << "the logout time held during the failover was lost";
  EXPECT_TRUE(eventually([&] { return primary.cli({"HGET", "iotgate:device:KP1:KD1", "activated"}) == "1"; },
                         seconds(10)))
      << "the KRT activation held during the failover was lost";
  EXPECT_TRUE(eventually(
      [&] {
        for (int i = 0; i < kDevices; ++i)
          if (offline_on(primary, pid, eui(i)) < offline_during[i]) return false;
        return true;
      },
      seconds(10)))
      << "logout times of the failover's logins are missing";
  EXPECT_EQ(primary.cli({"SCARD", "iotgate:devices:" + pid}), std::to_string(kDevices + 1));
  EXPECT_EQ(primary.cli({"HGET", "iotgate:device:" + pid + ":" + eui(0), "secret"}), secret(0));
  EXPECT_EQ(primary.cli({"HGET", "iotgate:account:app", "rules"}).empty(), false);
  // The replay protection held in memory throughout: the type-1 password of the held login is refused.
  {
    V2Creds c = v2_creds(pid, held_eui, held_secret, 1, held_from);
    MqttClient dev(c.client_id);
    EXPECT_EQ(dev.connect(broker->port(), c.username, c.password), 135);
  }

  // The plugin follows the new primary's changes: a device disabled there (by the CLI, through the sentinels) is
  // kicked.
  V2Creds c0 = v2_creds(pid, eui(0), secret(0), 0, 1);
  auto dev0 = std::make_unique<MqttClient>(c0.client_id);
  ASSERT_EQ(dev0->connect(broker->port(), c0.username, c0.password), 0);
  cli({"device", "disable", pid, eui(0)});
  EXPECT_EQ(primary.cli({"HGET", "iotgate:device:" + pid + ":" + eui(0), "enabled"}), "0");
  EXPECT_TRUE(dev0->wait_disconnected(seconds(10))) << "a change made on the new primary did not reach the broker";

  // The old primary comes back, as it was (a primary with the old data), and the sentinels make it a replica of the
  // new one. The plugin never goes back to it.
  const size_t from = broker->log_size();
  old_primary.start();
  EXPECT_TRUE(eventually([&] { return SentinelSet::role(old_primary) == "slave"; }, seconds(60)))
      << "the old primary was not turned into a replica\n" << set.sentinel_log(0);
  EXPECT_EQ(SentinelSet::info_field(old_primary, "master_port"), std::to_string(primary.port()));
  for (int i = 1; i < kDevices; ++i) ASSERT_TRUE(round(i, *app, &offline_during[i]));
  cli({"device", "enable", pid, eui(0)});
  EXPECT_TRUE(eventually(
      [&] {
        MqttClient dev(c0.client_id);
        return dev.connect(broker->port(), c0.username, c0.password) == 0;
      },
      seconds(10)))
      << "a device enabled on the new primary stays refused";
  EXPECT_TRUE(eventually([&] { return offline_on(primary, pid, eui(1)) >= offline_during[1]; }, seconds(10)));
  for (const auto& name : SentinelSet::client_names(old_primary))
    EXPECT_EQ(name.rfind("iotgate-", 0), std::string::npos) << "the plugin went back to the old primary: " << name;
  EXPECT_TRUE(SentinelSet::has_client(primary, "iotgate-watcher"));
  EXPECT_EQ(broker->count_log("redis primary of sentinel master", from), 0u) << broker->log();
}

// A failover that leaves the old primary running (SENTINEL FAILOVER, as for maintenance): it goes on answering, and
// taking writes, until the sentinels demote it seconds later, and a write it takes meanwhile is lost when it
// resyncs from the new primary. The plugin asks the sentinels twice a second whether they name another primary, and
// moves at once, before the old one is demoted.
TEST_F(SentinelFailoverTest, AnOldPrimaryStillRunningIsLeftAsSoonAsTheSentinelsNameAnother) {
  RedisServer& old_primary = set.server(0);
  RedisServer& replica = set.server(1);
  auto app = std::make_unique<MqttClient>("app:1");
  ASSERT_EQ(app->connect(broker->port(), "app", "app-pw"), 0);
  ASSERT_LT(app->subscribe("/sys/#", 1), 128);
  std::map<int, int64_t> offline;
  for (int i = 0; i < kDevices; ++i) ASSERT_TRUE(round(i, *app, &offline[i]));
  ASSERT_TRUE(eventually(
      [&] {
        return SentinelSet::has_client(old_primary, "iotgate-watcher") &&
               SentinelSet::has_client(old_primary, "iotgate-writer");
      },
      seconds(5)));
  ASSERT_TRUE(eventually([&] { return SentinelSet::info_field(old_primary, "connected_slaves") == "1"; }, seconds(10)));

  const size_t from = broker->log_size();
  const auto asked = Clock::now();
  auto answer = redis_call(set.sentinel_port(0), {"SENTINEL", "FAILOVER", SentinelSet::kMaster});
  ASSERT_TRUE(answer && *answer == std::vector<std::string>{"OK"}) << (answer ? testing::PrintToString(*answer) : "");
  std::optional<Clock::time_point> promoted, followed;
  std::string old_role_then;
  std::atomic<bool> done{false};
  std::thread watch([&] {
    while (!done && Clock::now() - asked < seconds(60)) {
      if (!promoted && SentinelSet::role(replica) == "master") promoted = Clock::now();
      if (promoted && SentinelSet::has_client(replica, "iotgate-watcher") &&
          SentinelSet::has_client(replica, "iotgate-writer")) {
        old_role_then = SentinelSet::role(old_primary);
        followed = Clock::now();
        break;
      }
      std::this_thread::sleep_for(milliseconds(50));
    }
    done = true;
  });
  int rounds = 0, failed = 0;
  while (!done) {
    for (int i = 0; i < kDevices; ++i, ++rounds)
      if (!round(i, *app, &offline[i])) ++failed;
  }
  watch.join();
  EXPECT_EQ(failed, 0) << "of " << rounds << " login/publish rounds during the failover";
  ASSERT_TRUE(promoted) << "the replica was not promoted\n" << set.sentinel_log(0);
  ASSERT_TRUE(followed) << "the plugin is not on the new primary\n" << broker->log();
  std::cout << "[ timing   ] SENTINEL FAILOVER -> replica promoted: " << secs(*promoted - asked)
            << " s; -> plugin on it: " << secs(*followed - asked) << " s; the old primary was then a "
            << old_role_then << "\n";
  EXPECT_LT(*followed - *promoted, seconds(10));
  EXPECT_EQ(old_role_then, "master") << "the plugin stayed on the old primary until the sentinels demoted it";
  EXPECT_TRUE(broker->wait_for_log("the sentinels name another primary than 127\\.0\\.0\\.1:" +
                                       std::to_string(old_primary.port()) + "; moving to it",
                                   seconds(1), from))
      << broker->log();
  // The writes go to the new primary; the old one is demoted (a replica of the new one) and left alone.
  EXPECT_TRUE(eventually(
      [&] {
        for (int i = 0; i < kDevices; ++i)
          if (offline_on(replica, pid, eui(i)) < offline[i]) return false;
        return true;
      },
      seconds(10)));
  EXPECT_TRUE(eventually([&] { return SentinelSet::role(old_primary) == "slave"; }, seconds(60)));
  for (int i = 0; i < kDevices; ++i) ASSERT_TRUE(round(i, *app, &offline[i]));
  EXPECT_TRUE(eventually([&] { return offline_on(replica, pid, eui(kDevices - 1)) >= offline[kDevices - 1]; },
                         seconds(10)));
  for (const auto& name : SentinelSet::client_names(old_primary))
    EXPECT_EQ(name.rfind("iotgate-", 0), std::string::npos) << "the plugin is still on the old primary: " << name;
  V2Creds c0 = v2_creds(pid, eui(0), secret(0), 0, 1);
  auto dev0 = std::make_unique<MqttClient>(c0.client_id);
  ASSERT_EQ(dev0->connect(broker->port(), c0.username, c0.password), 0);
  cli({"device", "disable", pid, eui(0)});
  EXPECT_TRUE(dev0->wait_disconnected(seconds(10))) << "a change made on the new primary did not reach the broker";
}

}  // namespace
}  // namespace iotgate::test
