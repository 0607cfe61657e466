// Self-test of the integration test harness against a plain mosquitto (no plugin) and a real redis-server.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <thread>

#include "harness.h"

using namespace std::chrono_literals;
using iotgate::test::Broker;
using iotgate::test::MqttClient;
using iotgate::test::RedisServer;

namespace {

bool process_exists(pid_t pid) { return pid > 0 && ::kill(pid, 0) == 0; }

void check_pub_sub(int protocol) {
  Broker broker({}, /*with_plugin=*/false);
  broker.start();
  MqttClient sub("selftest-sub-" + std::to_string(protocol), protocol);
  MqttClient pub("selftest-pub-" + std::to_string(protocol), protocol);
  ASSERT_EQ(sub.connect(broker.port(), std::nullopt, std::nullopt), 0);
  ASSERT_EQ(pub.connect(broker.port(), std::string("user"), std::string("pass")), 0);
  EXPECT_TRUE(sub.connected());
  ASSERT_EQ(sub.subscribe("selftest/#", 1), 1);
  EXPECT_EQ(pub.publish("selftest/a", "hello", 1), 0);
  EXPECT_EQ(pub.last_publish_reason(), 0);
  auto m = sub.wait_message("selftest/a");
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->topic, "selftest/a");
  EXPECT_EQ(m->payload, "hello");
  EXPECT_EQ(m->qos, 1);
  EXPECT_FALSE(m->retain);
  // QoS 0 and QoS 2, binary payload.
  const std::string binary("a\0b\xff", 4);
  EXPECT_EQ(pub.publish("selftest/b", binary, 0), 0);
  EXPECT_EQ(pub.publish("selftest/c", "two", 2), 0);
  auto b = sub.wait_message("selftest/b");
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->payload, binary);
  EXPECT_EQ(b->qos, 0);
  auto c = sub.wait_message("selftest/c");
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->qos, 1);  // downgraded to the subscription QoS
  pub.disconnect();
  EXPECT_FALSE(pub.connected());
  EXPECT_EQ(pub.disconnect_reason(), 0);
  EXPECT_TRUE(broker.wait_for_log("Client selftest-pub-" + std::to_string(protocol) + " disconnected"));
}

}  // namespace

TEST(HarnessSelfTest, PubSubQos1Mqtt5) { check_pub_sub(5); }

TEST(HarnessSelfTest, PubSubQos1Mqtt311) { check_pub_sub(4); }

TEST(HarnessSelfTest, WaitMessageFilterKeepsNonMatchingQueued) {
  Broker broker({}, false);
  broker.start();
  MqttClient sub("filter-sub");
  MqttClient pub("filter-pub");
  ASSERT_EQ(sub.connect(broker.port(), std::nullopt, std::nullopt), 0);
  ASSERT_EQ(pub.connect(broker.port(), std::nullopt, std::nullopt), 0);
  ASSERT_EQ(sub.subscribe("#", 1), 1);
  ASSERT_EQ(pub.publish("x/1", "first", 1), 0);
  ASSERT_EQ(pub.publish("y/1", "second", 1), 0);
  ASSERT_EQ(pub.publish("x/2", "third", 1), 0);

  auto y = sub.wait_message("y/+");
  ASSERT_TRUE(y.has_value());
  EXPECT_EQ(y->payload, "second");
  EXPECT_FALSE(sub.wait_message("z/#", 100ms).has_value());
  auto x1 = sub.wait_message("x/#");
  ASSERT_TRUE(x1.has_value());
  EXPECT_EQ(x1->payload, "first");  // order kept among the queued ones

  auto x2 = sub.wait_message("x/#");
  ASSERT_TRUE(x2.has_value());
  EXPECT_EQ(x2->payload, "third");

  // drain() returns what is queued: d/1 arrived before d/2 and stayed queued.
  ASSERT_EQ(pub.publish("d/1", "one", 1), 0);
  ASSERT_EQ(pub.publish("d/2", "two", 1), 0);
  ASSERT_TRUE(sub.wait_message("d/2").has_value());
  EXPECT_EQ(sub.queued(), 1u);
  auto rest = sub.drain();
  ASSERT_EQ(rest.size(), 1u);
  EXPECT_EQ(rest[0].topic, "d/1");
  EXPECT_EQ(sub.queued(), 0u);
  EXPECT_TRUE(sub.drain().empty());

  // Retained flag is reported to a later subscriber.
  ASSERT_EQ(pub.publish("r/1", "kept", 1, /*retain=*/true), 0);
  MqttClient late("filter-late", 4);
  ASSERT_EQ(late.connect(broker.port(), std::nullopt, std::nullopt), 0);
  ASSERT_EQ(late.subscribe("r/#", 0), 0);
  auto r = late.wait_message("r/1");
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->retain);
  EXPECT_EQ(r->payload, "kept");
  EXPECT_EQ(late.unsubscribe("r/#"), 0);
}

TEST(HarnessSelfTest, WillDeliveredWhenConnectionDrops) {
  Broker broker({}, false);
  broker.start();
  MqttClient watcher("will-watcher");
  ASSERT_EQ(watcher.connect(broker.port(), std::nullopt, std::nullopt), 0);
  ASSERT_EQ(watcher.subscribe("will/#", 1), 1);

  MqttClient dying("will-dying");
  dying.set_will("will/dying", "gone", 1);
  ASSERT_EQ(dying.connect(broker.port(), std::nullopt, std::nullopt), 0);
  dying.drop_connection();
  EXPECT_FALSE(dying.connected());
  auto m = watcher.wait_message("will/#");
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->topic, "will/dying");
  EXPECT_EQ(m->payload, "gone");

  // A clean disconnect sends no will.
  MqttClient polite("will-polite");
  polite.set_will("will/polite", "gone", 1);
  ASSERT_EQ(polite.connect(broker.port(), std::nullopt, std::nullopt), 0);
  polite.disconnect();
  EXPECT_FALSE(watcher.wait_message("will/polite", 300ms).has_value());

  // The same client object can connect again.
  ASSERT_EQ(dying.connect(broker.port(), std::nullopt, std::nullopt), 0);
  EXPECT_TRUE(dying.connected());
}

TEST(HarnessSelfTest, BrokerRestartKeepsPortAndKillDropsClients) {
  Broker broker({}, false);
  broker.start();
  const int port = broker.port();
  const pid_t first_pid = broker.pid();
  EXPECT_TRUE(broker.running());
  EXPECT_NE(broker.conf().find("allow_anonymous true"), std::string::npos);
  EXPECT_EQ(broker.conf().find("plugin "), std::string::npos);

  MqttClient client("restart-client");
  ASSERT_EQ(client.connect(port, std::nullopt, std::nullopt), 0);
  EXPECT_TRUE(broker.wait_for_log("New client connected from 127\\.0\\.0\\.1:\\d+ as restart-client"));
  EXPECT_EQ(broker.count_log("New client connected .* as restart-client"), 1u);

  const size_t mark = broker.log_size();
  broker.restart();
  EXPECT_EQ(broker.port(), port);
  EXPECT_NE(broker.pid(), first_pid);
  EXPECT_FALSE(process_exists(first_pid));
  EXPECT_TRUE(client.wait_disconnected());
  EXPECT_FALSE(client.connected());
  EXPECT_TRUE(broker.wait_for_log("mosquitto version \\S+ running", 1s, mark));
  EXPECT_EQ(broker.count_log("mosquitto version \\S+ running"), 2u);
  EXPECT_EQ(broker.count_log("New client connected .* as restart-client", mark), 0u);
  EXPECT_FALSE(broker.wait_for_log("no such line", 50ms));

  ASSERT_EQ(client.connect(port, std::nullopt, std::nullopt), 0);
  EXPECT_EQ(client.publish("t", "after restart", 1), 0);  // nobody subscribed: 16 reported as 0
  EXPECT_EQ(client.last_publish_reason(), 16);

  broker.kill();
  EXPECT_FALSE(broker.running());
  EXPECT_TRUE(client.wait_disconnected());
  EXPECT_NE(client.disconnect_reason(), 0);
  EXPECT_EQ(client.publish("t", "x", 1), -1);
  EXPECT_EQ(client.subscribe("t", 1), -1);

  // Nothing listens any more: connect fails quickly.
  MqttClient late("restart-late");
  EXPECT_EQ(late.connect(port, std::nullopt, std::nullopt, 1s), -1);
}

TEST(HarnessSelfTest, RefusedConnackStaysDisconnected) {
  Broker broker({}, false, {"allow_anonymous false"});
  broker.start();
  MqttClient v5("refused-v5", 5);
  EXPECT_EQ(v5.connect(broker.port(), std::nullopt, std::nullopt), 135);
  EXPECT_FALSE(v5.connected());
  MqttClient v311("refused-v311", 4);
  EXPECT_EQ(v311.connect(broker.port(), std::nullopt, std::nullopt), 5);
  EXPECT_FALSE(v311.connected());
  // No automatic reconnect: after a while still exactly one connection attempt each.
  std::this_thread::sleep_for(300ms);  // checking for an absence: nothing to poll for
  EXPECT_EQ(broker.count_log("New connection from"), 2u);
  EXPECT_EQ(v5.publish("t", "x", 1), -1);
  EXPECT_EQ(v5.connect(broker.port(), std::nullopt, std::nullopt), 135);  // can retry explicitly
  EXPECT_EQ(broker.count_log("New connection from"), 3u);
}

TEST(HarnessSelfTest, NoChildProcessesLeftBehind) {
  {
    RedisServer redis;
    redis.start();
    Broker broker({}, false);
    broker.start();
    redis.pause();
    broker.pause();
    EXPECT_EQ(redis.cli({"PING"}, 100ms), "");
  }  // destructors kill and reap both, even while stopped
  std::string children;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/task")) {
    children += iotgate::test::read_file(entry.path().string() + "/children");
  }
  EXPECT_EQ(children, "");
}

TEST(HarnessSelfTest, SessionTakeoverDisconnectsFirstClient) {
  Broker broker({}, false);
  broker.start();
  MqttClient first("same-id", 5);
  MqttClient second("same-id", 5);
  ASSERT_EQ(first.connect(broker.port(), std::nullopt, std::nullopt), 0);
  ASSERT_EQ(second.connect(broker.port(), std::nullopt, std::nullopt), 0);
  EXPECT_TRUE(first.wait_disconnected());
  // mosquitto 2.0.11 just closes the old connection (no DISCONNECT 142): the library reports a lost connection.
  EXPECT_EQ(first.disconnect_reason(), MOSQ_ERR_CONN_LOST);
  EXPECT_TRUE(second.connected());
  // Connecting an already connected client first closes the old connection cleanly.
  ASSERT_EQ(second.connect(broker.port(), std::nullopt, std::nullopt), 0);
  EXPECT_EQ(second.disconnect_reason(), 0);
  EXPECT_TRUE(second.connected());
}

TEST(HarnessSelfTest, PausedBrokerTimesOutConnect) {
  Broker broker({}, false);
  broker.start();
  broker.pause();
  MqttClient client("paused-client");
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(client.connect(broker.port(), std::nullopt, std::nullopt, 300ms), -1);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
  EXPECT_FALSE(client.connected());
  broker.resume();
  EXPECT_EQ(client.connect(broker.port(), std::nullopt, std::nullopt), 0);
}

TEST(HarnessSelfTest, PluginConfGeneration) {
  Broker broker({{"redis_uri", "redis://127.0.0.1:1/0"}, {"key_prefix", "t:"}}, true, {"max_keepalive 60"});
  const std::string conf = broker.conf();
  EXPECT_NE(conf.find("per_listener_settings false\n"), std::string::npos) << conf;
  EXPECT_NE(conf.find("listener " + std::to_string(broker.port()) + " 127.0.0.1\n"), std::string::npos) << conf;
  EXPECT_NE(conf.find("allow_anonymous false\n"), std::string::npos) << conf;
  EXPECT_NE(conf.find("persistence false\n"), std::string::npos) << conf;
  EXPECT_NE(conf.find("log_dest file " + broker.log_path() + "\n"), std::string::npos) << conf;
  const size_t plugin = conf.find(std::string("plugin ") + IOTGATE_PLUGIN_PATH + "\n");
  ASSERT_NE(plugin, std::string::npos) << conf;
  EXPECT_GT(conf.find("plugin_opt_redis_uri redis://127.0.0.1:1/0\n"), plugin) << conf;
  EXPECT_GT(conf.find("plugin_opt_key_prefix t:\n"), plugin) << conf;
  EXPECT_GT(conf.find("max_keepalive 60\n"), conf.find("plugin_opt_redis_uri")) << conf;
  EXPECT_FALSE(broker.running());
}

TEST(HarnessSelfTest, BrokerStartFailureThrowsWithLog) {
  Broker broker({}, false, {"this_is_not_an_option 1"});
  try {
    broker.start();
    FAIL() << "start() should have thrown";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("this_is_not_an_option"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(broker.running());
}

TEST(HarnessSelfTest, RedisRestartKeepsData) {
  RedisServer redis;
  redis.start();
  EXPECT_EQ(redis.uri(), "redis://127.0.0.1:" + std::to_string(redis.port()) + "/0");
  EXPECT_EQ(redis.cli({"SET", "selftest:key", "value with spaces"}), "OK");
  EXPECT_EQ(redis.cli({"GET", "selftest:key"}), "value with spaces");
  const int port = redis.port();
  redis.restart();
  EXPECT_EQ(redis.port(), port);
  EXPECT_EQ(redis.cli({"GET", "selftest:key"}), "value with spaces");
  EXPECT_EQ(redis.cli({"CONFIG", "GET", "appendonly"}), "appendonly\nyes");

  // Written just before a SIGKILL: the AOF write has happened before the reply.
  EXPECT_EQ(redis.cli({"SET", "selftest:k2", "v2"}), "OK");
  redis.kill();
  EXPECT_FALSE(redis.running());
  redis.start();
  EXPECT_EQ(redis.cli({"GET", "selftest:k2"}), "v2");
}

TEST(HarnessSelfTest, RedisPauseResume) {
  RedisServer redis;
  redis.start();
  EXPECT_TRUE(redis.ping());
  redis.pause();
  EXPECT_FALSE(redis.ping(200ms));
  auto r = redis.cli_result({"PING"}, 300ms);
  EXPECT_TRUE(r.timed_out);
  EXPECT_EQ(redis.cli({"PING"}, 200ms), "");
  redis.resume();
  EXPECT_TRUE(redis.ping());
  EXPECT_EQ(redis.cli({"PING"}), "PONG");
  redis.stop();
  EXPECT_FALSE(redis.running());
  EXPECT_FALSE(redis.ping(200ms));
}

TEST(HarnessSelfTest, RunCommandCapturesOutput) {
  auto r = iotgate::test::run_command({"sh", "-c", "echo out; echo err >&2; exit 3"});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.out, "out\n");
  EXPECT_EQ(r.err, "err\n");
  EXPECT_FALSE(r.timed_out);

  auto env = iotgate::test::run_command({"sh", "-c", "printf %s \"$SELFTEST_VAR\""}, {{"SELFTEST_VAR", "v a l"}});
  EXPECT_EQ(env.exit_code, 0);
  EXPECT_EQ(env.out, "v a l");

  auto missing = iotgate::test::run_command({"/nonexistent/program"});
  EXPECT_EQ(missing.exit_code, 127);
  EXPECT_FALSE(missing.err.empty());

  auto slow = iotgate::test::run_command({"sleep", "30"}, {}, 200ms);
  EXPECT_TRUE(slow.timed_out);
  EXPECT_EQ(slow.exit_code, -1);

  auto killed = iotgate::test::run_command({"sh", "-c", "kill -TERM $$"});
  EXPECT_EQ(killed.exit_code, 128 + SIGTERM);

  // Large output on both streams does not deadlock.
  auto big = iotgate::test::run_command(
      {"sh", "-c", "i=0; while [ $i -lt 2000 ]; do echo line$i; echo errline$i >&2; i=$((i+1)); done"});
  EXPECT_EQ(big.exit_code, 0);
  EXPECT_GT(big.out.size(), 10000u);
  EXPECT_GT(big.err.size(), 10000u);
}

TEST(HarnessSelfTest, JsonStringAndTempDir) {
  EXPECT_EQ(iotgate::test::json_string(R"({"a":"x","b":1,"c":null})", "a"), "x");
  EXPECT_EQ(iotgate::test::json_string(R"({"a":"x","b":1})", "b"), "");
  EXPECT_EQ(iotgate::test::json_string(R"({"a":"x"})", "missing"), "");
  EXPECT_EQ(iotgate::test::json_string("not json", "a"), "");
  EXPECT_EQ(iotgate::test::json_string(R"(["a"])", "a"), "");

  std::string path;
  {
    iotgate::test::TempDir dir;
    path = dir.path;
    auto r = iotgate::test::run_command({"sh", "-c", "mkdir -p \"$0/sub\" && echo hi > \"$0/sub/f\"", path});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(iotgate::test::read_file(path + "/sub/f"), "hi\n");
  }
  if (std::getenv("IOTGATE_KEEP_TEMP") == nullptr) {
    EXPECT_EQ(iotgate::test::read_file(path + "/sub/f"), "");
  }
  const int p = iotgate::test::free_port();
  EXPECT_GT(p, 0);
  EXPECT_LT(p, 65536);
}
