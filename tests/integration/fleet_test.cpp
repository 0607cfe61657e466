// Several brokers, each with the plugin, on one Redis (issue 18, docs/deployment.md): every promise holds across
// them. Broker A is the fixture's broker; broker B shares its Redis.
#include <fstream>
#include <sstream>

#include "iotgate/crypto.h"
#include "iotgate/fleet.h"
#include "iotgate/store.h"
#include "stack.h"

namespace iotgate::test {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

class FleetTest : public StackTest {
 protected:
  void seed() override {
    add_lierda_product(kPid, 1);
    add_lierda_device(kPid, kEui, kSecret);
    cli({"account", "add", "app", "--password", "app-pw", "--allow", "read /sys/#"});
    cli({"account", "add", "backend", "--password", "backend-pw", "--allow", "readwrite /sys/#"});
    for (int i = 0; i < 6; ++i) add_lierda_device(kPid, "LBDEV" + std::to_string(i), kSecret);
    cli({"product", "add", "krt", "--product-id", "KP1", "--product-secret", "product-secret-1"});
    cli({"device", "add", "krt", "--product-id", "KP1", "--device-id", "KD1", "--secret", "kd1-secret"});
    cli({"product", "add", "emu", "--product-key", "PK1"});
    cli({"device", "add", "emu", "--product-key", "PK1", "--device", "gw1", "--secret", "gw1-secret-1"});
  }
  void SetUp() override {
    StackTest::SetUp();
    std::map<std::string, std::string> opts = plugin_options();
    opts.emplace("redis_port", std::to_string(redis.port()));
    opts.emplace("redis_timeout_ms", "300");
    broker_b = std::make_unique<Broker>(opts, true, extra_conf());
    broker_b->start();
    ASSERT_TRUE(broker_b->wait_for_log("iotgate: loaded", seconds(10))) << broker_b->log();
  }
  std::unique_ptr<MqttClient> connect_to(Broker& b, const std::string& cid, const std::string& user,
                                         const std::string& pw, int expect = 0) {
    auto c = std::make_unique<MqttClient>(cid);
    EXPECT_EQ(c->connect(b.port(), user, pw), expect) << cid << " on port " << b.port();
    return c;
  }
  // A production task 1.0 -> 2.0 of kPid, created, approved and on both brokers.
  std::string running_task(const std::vector<std::string>& options) {
    std::vector<std::string> args = {"task", "create", "--product-id", kPid, "--name", "fw-2.0", "--type", "wifi",
                                     "--from-version", "1.0", "--target-version", "2.0", "--target-url",
                                     "http://fw.example/2.0.bin", "--target-md5", "0123456789abcdef0123456789abcdef",
                                     "--target-size", "4096"};
    args.insert(args.end(), options.begin(), options.end());
    std::string task = json_string(cli(args), "id");
    cli({"--operator", "alice", "task", "submit", task, "--reviewer", "bob"});
    cli({"--operator", "bob", "task", "review", task, "--approve"});
    std::this_thread::sleep_for(milliseconds(700));
    return task;
  }
  std::unique_ptr<Broker> broker_b;
};

// A type-1 password captured from a device that went offline on A must not log in on B: the logout time that
// refuses it reaches every broker (through the fleet events on the commands stream) within a second.
TEST_F(FleetTest, TypeOnePasswordUsedOnOneBrokerIsRefusedOnTheOtherOnceTheDeviceIsOffline) {
  V2Creds captured = v2_creds(kPid, kEui, kSecret, 1, unix_now());
  auto device = connect_to(*broker, captured.client_id, captured.username, captured.password);
  ASSERT_TRUE(device->connected());
  // Past the login's write batch (50 ms), so that the logout is announced in a batch of its own, with no claim.
  std::this_thread::sleep_for(milliseconds(300));
  device->disconnect();
  ASSERT_TRUE(broker->wait_for_log("Client " + captured.client_id + " disconnected", seconds(3)));
  // One attempt on B a second after the logout: refused (an attempt that got in would itself end with a logout
  // on B and hide a broker that never heard of A's).
  std::this_thread::sleep_for(milliseconds(1000));
  connect_to(*broker_b, captured.client_id, captured.username, captured.password, 135);
  EXPECT_TRUE(broker_b->wait_for_log("is not after the device's last offline time", seconds(2)));
  std::this_thread::sleep_for(milliseconds(1500));
  connect_to(*broker_b, captured.client_id, captured.username, captured.password, 135);
  connect_to(*broker, captured.client_id, captured.username, captured.password, 135);
  // A fresh type-1 password still logs in on either broker.
  std::this_thread::sleep_for(milliseconds(1100));
  V2Creds fresh = v2_creds(kPid, kEui, kSecret, 1, unix_now());
  EXPECT_TRUE(connect_to(*broker_b, fresh.client_id, fresh.username, fresh.password)->connected());
}

// One client id, one session, across brokers: a login on B ends the older session of that id on A within a second,
// and the device counts as online.
TEST_F(FleetTest, LoggingInOnAnotherBrokerEndsTheOlderSessionOfTheClientId) {
  V2Creds c = v2_creds(kPid, kEui, kSecret, 0, 1);
  auto on_a = connect_to(*broker, c.client_id, c.username, c.password);
  ASSERT_TRUE(on_a->connected());
  std::this_thread::sleep_for(milliseconds(50));
  auto t0 = Clock::now();
  auto on_b = connect_to(*broker_b, c.client_id, c.username, c.password);
  ASSERT_TRUE(on_b->connected());
  EXPECT_TRUE(on_a->wait_disconnected(seconds(3)));
  EXPECT_LT(std::chrono::duration_cast<milliseconds>(Clock::now() - t0), milliseconds(1000));
  EXPECT_TRUE(broker->wait_for_log("disconnecting '" + c.client_id + "': its client id logged in on another broker",
                                   seconds(2)));
  // The newer session stays, and the device counts as online (its logout on A is no later than its login on B).
  std::this_thread::sleep_for(milliseconds(1500));
  EXPECT_TRUE(on_b->connected());
  auto shown = parse(cli({"device", "show", kPid, kEui}));
  ASSERT_TRUE(shown.IsObject());
  auto number = [&](const char* f) { return std::stoll(shown[f].GetString()); };
  EXPECT_GE(number("last_online"), number("last_offline"));
  EXPECT_EQ(on_b->publish("/sys/" + kOpenid + "/" + kPid + "/" + kEui + "/uplink", "x", 1), 0);
  // And back: the session on B gives way to a newer one on A.
  auto again_a = connect_to(*broker, c.client_id, c.username, c.password);
  EXPECT_TRUE(on_b->wait_disconnected(seconds(3)));
  std::this_thread::sleep_for(milliseconds(1000));
  EXPECT_TRUE(again_a->connected());
}

// The same for service accounts and for the KRT seed's shared client id (ProductID).
TEST_F(FleetTest, TakeoverAcrossBrokersHoldsForAccountsAndSharedKrtClientIds) {
  auto app_a = connect_to(*broker, "app:1", "app", "app-pw");
  std::this_thread::sleep_for(milliseconds(50));
  auto app_b = connect_to(*broker_b, "app:1", "app", "app-pw");
  EXPECT_TRUE(app_a->wait_disconnected(seconds(2)));
  auto krt_a = connect_to(*broker, "KP1", "KD1", "kd1-secret");
  std::this_thread::sleep_for(milliseconds(50));
  auto krt_b = connect_to(*broker_b, "KP1", "KD1", "kd1-secret");
  EXPECT_TRUE(krt_a->wait_disconnected(seconds(2)));
  std::this_thread::sleep_for(milliseconds(1000));
  EXPECT_TRUE(app_b->connected());
  EXPECT_TRUE(krt_b->connected());
}

// Revocation: a disabled device is kicked on every broker and refused on every broker within a second.
TEST_F(FleetTest, DisablingADeviceKicksAndRefusesItOnEveryBroker) {
  auto on_a = connect_to(*broker, "V2_" + kPid + "." + kEui + "_0_1", v2_creds(kPid, kEui, kSecret, 0, 1).username,
                         v2_creds(kPid, kEui, kSecret, 0, 1).password);
  auto krt_b = connect_to(*broker_b, "KP1.KD1", "KD1", "kd1-secret");
  auto t0 = Clock::now();
  cli({"device", "disable", kPid, kEui});
  cli({"device", "disable", "KP1", "KD1"});
  EXPECT_TRUE(on_a->wait_disconnected(seconds(3)));
  EXPECT_TRUE(krt_b->wait_disconnected(seconds(3)));
  EXPECT_LT(std::chrono::duration_cast<milliseconds>(Clock::now() - t0), milliseconds(1000));
  V2Creds c = v2_creds(kPid, kEui, kSecret, 0, 1);
  connect_to(*broker_b, c.client_id, c.username, c.password, 135);
  connect_to(*broker, "KP1.KD1", "KD1", "kd1-secret", 135);
}

// Two brokers rekeying one device at once (its key expired, both hear of it by the same change) each run the
// issue script with a key of their own: the key is issued once, and both tell the device the same one.
TEST_F(FleetTest, TwoBrokersRekeyingOneDeviceAtOnceIssueOneSessionKey) {
  add_lierda_product("AEEEEEEE", 1, true);
  add_lierda_device("AEEEEEEE", "CRYPTDEV01", kSecret);
  Config config;
  config.redis_port = redis.port();
  RedisStore store_a(config), store_b(config);
  ASSERT_TRUE(store_a.connect());
  ASSERT_TRUE(store_b.connect());
  auto rekey = [&](RedisStore& store, const std::string& session_id) {
    StoreJob job;
    job.type = StoreJob::Type::lierda_issue;
    job.product = "AEEEEEEE";
    job.device = "CRYPTDEV01";
    job.candidate_secret = random_hex(16);
    job.fields = {{"session_id", session_id}, {"nonce", "7"},
                  {"session_key", *lierda_session_key(kKey, session_id, 7)},
                  {"session_key_expires", std::to_string(unix_now() + 3600)}};
    return store.run(job);
  };
  StoreResult first = rekey(store_a, "AAAA0001"), second = rekey(store_b, "BBBB0002");
  ASSERT_TRUE(first.ok && second.ok);
  ASSERT_TRUE(first.device && second.device);
  EXPECT_EQ(first.device->at("session_id"), "AAAA0001");
  EXPECT_EQ(second.device->at("session_id"), "AAAA0001");  // the second broker is told the key that stays
  EXPECT_EQ(second.device->at("session_key"), first.device->at("session_key"));
  EXPECT_EQ(redis.cli({"HGET", "iotgate:device:AEEEEEEE:CRYPTDEV01", "session_id"}), "AAAA0001");
  // Once it has expired, the next rekey replaces it.
  redis.cli({"HSET", "iotgate:device:AEEEEEEE:CRYPTDEV01", "session_key_expires", "1"});
  EXPECT_EQ(rekey(store_b, "CCCC0003").device->at("session_id"), "CCCC0003");
}

// One batch of logins, logouts, an activation and a heartbeat (RedisStore::touch_many): an HSET per times hash,
// the later of a device's two logouts kept, the activation of a known device only, and one fleet announcement
// with every claim and logout time in it (fleet.h), which is what the other brokers read.
TEST_F(FleetTest, ABatchOfTouchesWritesTheTimesAndOneAnnouncement) {
  // A key prefix of its own: the fixture's brokers write heartbeats to their commands stream meanwhile.
  Config config;
  config.redis_port = redis.port();
  config.key_prefix = "touchtest:";
  config.broker_id = "brokertest";
  redis.cli({"HSET", "touchtest:device:KP1:KD1", "enabled", "1", "activated", "0"});
  RedisStore store(config);
  ASSERT_TRUE(store.connect());
  auto touch = [](Touch t) {
    StoreJob job;
    job.type = StoreJob::Type::touch_device;
    job.durable = true;
    job.touch = std::move(t);
    return job;
  };
  const std::string weird_cid = "cid with spaces 12 and:more";  // (redis-cli prints one value per line)
  StoreResult r = store.touch_many({
      touch({.product = kPid, .device = kEui, .last_online = 1800000100, .claim = "V2_first", .claim_at = 1800000100123}),
      touch({.product = kPid, .device = kEui, .last_offline = 1800000105}),
      touch({.product = kPid, .device = "LBDEV0", .last_online = 1800000106}),
      touch({.product = kPid, .device = kEui, .last_offline = 1800000107}),
      touch({.product = "KP1", .device = "KD1", .activated = true}),
      touch({.product = "KP1", .device = "NOSUCHDEV", .activated = true}),
      touch({.claim = weird_cid, .claim_at = 1800000108000}),
      touch({.alive = true}),
  });
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(redis.cli({"HGET", "touchtest:last_online:" + std::string(kPid), kEui}), "1800000100");
  EXPECT_EQ(redis.cli({"HGET", "touchtest:last_online:" + std::string(kPid), "LBDEV0"}), "1800000106");
  EXPECT_EQ(redis.cli({"HGET", "touchtest:last_offline:" + std::string(kPid), kEui}), "1800000107");
  EXPECT_EQ(redis.cli({"HGET", "touchtest:device:KP1:KD1", "activated"}), "1");
  EXPECT_EQ(redis.cli({"EXISTS", "touchtest:device:KP1:NOSUCHDEV"}), "0");  // a deleted device stays deleted

  // The announcement: redis-cli prints the entry's id, then its fields and values one per line.
  std::istringstream lines(redis.cli({"XREVRANGE", "touchtest:commands", "+", "-", "COUNT", "1"}));
  std::map<std::string, std::string> entry;
  std::string id, field, value;
  std::getline(lines, id);
  while (std::getline(lines, field) && std::getline(lines, value)) entry[field] = value;
  EXPECT_EQ(entry["kind"], "fleet");
  EXPECT_EQ(entry["broker"], "brokertest");
  EXPECT_EQ(entry["alive"], "1");
  std::vector<std::pair<int64_t, std::string>> claims, offline;
  int64_t number = 0;
  std::string_view text;
  for (std::string_view list = entry["claims"]; fleet::next(list, number, text);) claims.emplace_back(number, text);
  for (std::string_view list = entry["offline"]; fleet::next(list, number, text);) offline.emplace_back(number, text);
  const std::vector<std::pair<int64_t, std::string>> want_claims = {{1800000100123, "V2_first"},
                                                                    {1800000108000, weird_cid}};
  const std::string device = std::string(kPid) + ":" + kEui;
  const std::vector<std::pair<int64_t, std::string>> want_offline = {{1800000105, device}, {1800000107, device}};
  EXPECT_EQ(claims, want_claims);
  EXPECT_EQ(offline, want_offline);
}

// conf/haproxy.cfg as docs/deployment.md gives it (its ports replaced): devices log in through HAProxy and are
// spread over both brokers; a back end connected to every broker reads each uplink once and reaches each device
// with one publish per broker, once; when a broker dies, its devices log in again through HAProxy on the other.
TEST_F(FleetTest, DevicesBehindHaproxyAndABackEndOnEveryBroker) {
  TempDir dir;
  int frontend = free_port();
  std::string cfg = read_file(std::string(IOTGATE_SOURCE_DIR) + "/conf/haproxy.cfg");
  ASSERT_FALSE(cfg.empty());
  auto replace = [&](const std::string& from, const std::string& to) {
    size_t at = cfg.find(from);
    ASSERT_NE(at, std::string::npos) << from;
    cfg.replace(at, from.size(), to);
  };
  replace("127.0.0.1:1883", "127.0.0.1:" + std::to_string(frontend));
  replace("127.0.0.1:1884", "127.0.0.1:" + std::to_string(broker->port()));
  replace("127.0.0.1:1885", "127.0.0.1:" + std::to_string(broker_b->port()));
  { std::ofstream(dir.path + "/haproxy.cfg") << cfg; }
  Process haproxy;
  haproxy.spawn({"/usr/sbin/haproxy", "-db", "-f", dir.path + "/haproxy.cfg"}, dir.path + "/haproxy.log");
  auto connect_via_lb = [&](const std::string& eui, milliseconds within) {
    V2Creds c = v2_creds(kPid, eui, kSecret, 0, 1);
    auto deadline = Clock::now() + within;
    std::unique_ptr<MqttClient> dev;
    do {  // HAProxy may still be starting, or still sending connections to a broker that just died
      dev = std::make_unique<MqttClient>(c.client_id);
      if (dev->connect(frontend, c.username, c.password, seconds(2)) == 0) return dev;
      std::this_thread::sleep_for(milliseconds(100));
    } while (Clock::now() < deadline);
    ADD_FAILURE() << eui << " could not log in through HAProxy: " << read_file(dir.path + "/haproxy.log");
    return dev;
  };
  // The back end: one account session on every broker, reading uplinks.
  auto backend_a = connect_to(*broker, "backend:a", "backend", "backend-pw");
  auto backend_b = connect_to(*broker_b, "backend:b", "backend", "backend-pw");
  ASSERT_LT(backend_a->subscribe("/sys/+/+/+/uplink", 1), 128);
  ASSERT_LT(backend_b->subscribe("/sys/+/+/+/uplink", 1), 128);
  std::vector<std::unique_ptr<MqttClient>> devices;
  for (int i = 0; i < 6; ++i) devices.push_back(connect_via_lb("LBDEV" + std::to_string(i), seconds(10)));
  auto on = [&](Broker& b) {
    int n = 0;
    for (int i = 0; i < 6; ++i) n += b.count_log("New client connected from .* as V2_" + kPid + ".LBDEV" + std::to_string(i));
    return n;
  };
  EXPECT_GE(on(*broker), 1);  // leastconn spreads them
  EXPECT_GE(on(*broker_b), 1);
  std::string prefix = "/sys/" + kOpenid + "/" + kPid + "/";
  for (int i = 0; i < 6; ++i) {
    ASSERT_LT(devices[i]->subscribe(prefix + "LBDEV" + std::to_string(i) + "/downlink", 1), 128);
    EXPECT_EQ(devices[i]->publish(prefix + "LBDEV" + std::to_string(i) + "/uplink", "up" + std::to_string(i), 1), 0);
  }
  std::this_thread::sleep_for(milliseconds(500));
  std::map<std::string, int> uplinks;
  for (auto* b : {backend_a.get(), backend_b.get()})
    for (const auto& m : b->drain()) ++uplinks[m.payload];
  for (int i = 0; i < 6; ++i) EXPECT_EQ(uplinks["up" + std::to_string(i)], 1) << "uplink of LBDEV" << i;
  // A downlink published on every broker reaches its device once: the device is on exactly one of them.
  for (auto* b : {backend_a.get(), backend_b.get()}) EXPECT_EQ(b->publish(prefix + "LBDEV3/downlink", "down3", 1), 0);
  ASSERT_TRUE(devices[3]->wait_message(prefix + "LBDEV3/downlink", seconds(3)));
  std::this_thread::sleep_for(milliseconds(300));
  EXPECT_EQ(devices[3]->queued(), 0u) << "a second copy of the downlink";
  // Broker A dies: its devices come back through HAProxy on B.
  broker->kill();
  for (int i = 0; i < 6; ++i) {
    if (devices[i]->wait_disconnected(milliseconds(100))) {
      auto again = connect_via_lb("LBDEV" + std::to_string(i), seconds(15));
      EXPECT_TRUE(again && again->connected());
      devices[i] = std::move(again);
    }
  }
  for (int i = 0; i < 6; ++i) EXPECT_TRUE(devices[i]->connected()) << i;
  EXPECT_EQ(on(*broker_b), 6);
  haproxy.terminate(seconds(2));
}

// OTA progress recorded on one broker is known on the other within a second: a device notified and acked on A
// that reconnects to B with the target version counts as succeeded, once, and A's timeout sweep leaves it be; a
// device that failed on A is not notified again on B; an ack on B for A's DownID counts.
TEST_F(FleetTest, OtaProgressRecordedOnOneBrokerIsKnownOnTheOther) {
  for (const char* eui : {"OTADEV1", "OTADEV2", "OTADEV3"}) add_lierda_device(kPid, eui, kSecret);
  std::string task = running_task({"--upgrade-timeout", "3"});
  auto prefix = [&](const std::string& eui) { return "/sys/" + kOpenid + "/" + kPid + "/" + eui + "/"; };
  auto on = [&](Broker& b, const std::string& eui, int ts) {
    V2Creds c = v2_creds(kPid, eui, kSecret, 0, ts);
    return connect_to(b, c.client_id, c.username, c.password);
  };
  auto report = [&](MqttClient& dev, const std::string& eui, const std::string& version) {
    EXPECT_EQ(dev.publish(prefix(eui) + "firmware_report",
                          R"({"MessageId":7,"HeaderCtrl":8,"Payload":{"SoftVer":")" + version + R"("},"Version":"2.0"})", 1),
              0);
    EXPECT_TRUE(dev.wait_message(prefix(eui) + "firmware_report_ack", seconds(3)));
  };
  auto ack = [&](MqttClient& dev, const std::string& eui, const std::string& down_id) {
    EXPECT_EQ(dev.publish(prefix(eui) + "ota_notify_ack",
                          R"({"MessageId":8,"HeaderCtrl":9,"Payload":{"DownID":")" + down_id + R"("},"Version":"2.0"})", 1),
              0);
  };
  auto state = [&](const std::string& eui) {
    std::string json = redis.cli({"HGET", "iotgate:ota:progress:" + task, eui});
    auto d = parse(json);
    return d.IsObject() ? std::string(d["state"].GetString()) : std::string("none");
  };
  // 1: notified and acked on A, then on B with the new version.
  auto a1 = on(*broker, "OTADEV1", 1);
  report(*a1, "OTADEV1", "1.0");
  auto n1 = a1->wait_message(prefix("OTADEV1") + "ota_notify", seconds(3));
  ASSERT_TRUE(n1);
  ack(*a1, "OTADEV1", parse(n1->payload)["Payload"]["DownID"].GetString());
  // 2: notified on A, acked on B (A's DownID), then reports the new version there.
  auto a2 = on(*broker, "OTADEV2", 1);
  report(*a2, "OTADEV2", "1.0");
  auto n2 = a2->wait_message(prefix("OTADEV2") + "ota_notify", seconds(3));
  ASSERT_TRUE(n2);
  // 3: notified on A, fails there (reports a third version from a new session).
  auto a3 = on(*broker, "OTADEV3", 1);
  report(*a3, "OTADEV3", "1.0");
  ASSERT_TRUE(a3->wait_message(prefix("OTADEV3") + "ota_notify", seconds(3)));
  a3->disconnect();
  auto a3b = on(*broker, "OTADEV3", 2);
  report(*a3b, "OTADEV3", "1.5");
  a3b->disconnect();
  EXPECT_EQ(state("OTADEV1"), "acked");
  EXPECT_EQ(state("OTADEV3"), "failed");
  std::this_thread::sleep_for(milliseconds(1000));  // what A recorded reaches B
  a1->disconnect();
  a2->disconnect();
  auto b1 = on(*broker_b, "OTADEV1", 2);
  report(*b1, "OTADEV1", "2.0");
  auto b2 = on(*broker_b, "OTADEV2", 2);
  ack(*b2, "OTADEV2", parse(n2->payload)["Payload"]["DownID"].GetString());
  std::this_thread::sleep_for(milliseconds(300));
  EXPECT_EQ(state("OTADEV2"), "acked");  // B knew A's DownID
  b2->disconnect();
  auto b2b = on(*broker_b, "OTADEV2", 3);
  report(*b2b, "OTADEV2", "2.0");
  auto b3 = on(*broker_b, "OTADEV3", 3);
  report(*b3, "OTADEV3", "1.0");
  EXPECT_FALSE(b3->wait_message(prefix("OTADEV3") + "ota_notify", milliseconds(800)));  // failed stays failed
  std::this_thread::sleep_for(milliseconds(300));
  EXPECT_EQ(state("OTADEV1"), "succeeded");
  EXPECT_EQ(state("OTADEV2"), "succeeded");
  EXPECT_EQ(state("OTADEV3"), "failed");
  EXPECT_EQ(redis.cli({"HGET", "iotgate:ota:task:" + task, "upgrade_count"}), "2");  // each success once
  // Past the upgrade timeout (3 s after the notification), A's sweep must not time the finished devices out.
  std::this_thread::sleep_for(milliseconds(3500));
  EXPECT_EQ(state("OTADEV1"), "succeeded");
  EXPECT_EQ(state("OTADEV2"), "succeeded");
}

// An EMU command is published by the broker that holds the gateway's session, once: an observer of every topic on
// the other broker (which would relay it over a bridge) sees nothing, and a gateway connected nowhere gets nothing.
TEST_F(FleetTest, AnEmuCommandIsPublishedOnlyByTheBrokerHoldingTheGateway) {
  cli({"account", "add", "observer", "--password", "observer-pw", "--superuser"});
  std::this_thread::sleep_for(milliseconds(300));  // the account reaches both brokers
  auto watch_a = connect_to(*broker, "observer:a", "observer", "observer-pw");
  auto watch_b = connect_to(*broker_b, "observer:b", "observer", "observer-pw");
  ASSERT_LT(watch_a->subscribe("v1/#", 1), 128);
  ASSERT_LT(watch_b->subscribe("v1/#", 1), 128);
  const std::string topic = "v1/wudun/PK1/gw1/ota/emu_version/command";
  cli({"emu", "version", "--product-key", "PK1", "--device", "gw1"});  // connected nowhere
  EXPECT_FALSE(watch_a->wait_message(topic, milliseconds(1000)));
  EXPECT_FALSE(watch_b->wait_message(topic, milliseconds(100)));
  auto gw = connect_to(*broker_b, "gw1", "gw1", "gw1-secret-1");
  ASSERT_LT(gw->subscribe("v1/wudun/PK1/gw1/ota/+/command", 1), 128);
  cli({"emu", "version", "--product-key", "PK1", "--device", "gw1"});
  EXPECT_TRUE(gw->wait_message(topic, seconds(3))) << broker_b->log();
  EXPECT_TRUE(watch_b->wait_message(topic, seconds(1)));
  EXPECT_FALSE(watch_a->wait_message(topic, milliseconds(1000)));
  EXPECT_FALSE(gw->wait_message(topic, milliseconds(100)));  // once
}

// A task's rate limit holds fleet-wide: each broker notifies its share (the limit / the brokers alive), so two
// brokers with three reporting devices each notify two devices together under --rate-limit 2, not two each.
TEST_F(FleetTest, AnOtaRateLimitHoldsForTheFleetNotPerBroker) {
  std::string task = running_task({"--rate-limit", "2"});
  std::vector<std::unique_ptr<MqttClient>> devices;
  int notified = 0;
  for (int i = 0; i < 6; ++i) {
    const std::string eui = "LBDEV" + std::to_string(i);
    const std::string prefix = "/sys/" + kOpenid + "/" + kPid + "/" + eui + "/";
    V2Creds c = v2_creds(kPid, eui, kSecret, 0, 1);
    devices.push_back(connect_to(i % 2 ? *broker_b : *broker, c.client_id, c.username, c.password));
    EXPECT_EQ(devices.back()->publish(prefix + "firmware_report",
                                      R"({"MessageId":7,"HeaderCtrl":8,"Payload":{"SoftVer":"1.0"},"Version":"2.0"})", 1),
              0);
    EXPECT_TRUE(devices.back()->wait_message(prefix + "firmware_report_ack", seconds(3)));
  }
  for (int i = 0; i < 6; ++i) {
    const std::string prefix = "/sys/" + kOpenid + "/" + kPid + "/LBDEV" + std::to_string(i) + "/";
    notified += devices[i]->wait_message(prefix + "ota_notify", milliseconds(i == 0 ? 1000 : 100)).has_value();
  }
  EXPECT_EQ(notified, 2);
  auto shown = parse(cli({"task", "show", task}));
  ASSERT_TRUE(shown.IsObject());
  EXPECT_EQ(shown["devices_by_state"]["notified"].GetInt(), 2);
}

}  // namespace
}  // namespace iotgate::test
