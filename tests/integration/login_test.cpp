// Every login kind against a real broker and Redis: accepted, and each refusal reason with its log line.
#include "stack.h"

namespace iotgate::test {
namespace {

constexpr int kNotAuthorized = 135;

class LoginTest : public StackTest {
 protected:
  void seed() override {
    add_lierda_product(kPid, 1);
    add_lierda_device(kPid, kEui, kSecret);
    add_lierda_product("BB30C505", 1);
    add_lierda_device("BB30C505", "OFFDEVICE1", kSecret);
    cli({"device", "disable", "BB30C505", "OFFDEVICE1"});
    add_lierda_product("CC30C505", 1);
    add_lierda_device("CC30C505", "DEVINOFFPRODUCT", kSecret);
    cli({"product", "disable", "CC30C505"});
    cli({"product", "add", "krt", "--product-id", "KP1", "--product-secret", "prodsecret1"});
    krt_secret = json_string(cli({"device", "add", "krt", "--product-id", "KP1", "--device-id", "KD1"}), "secret");
    cli({"product", "add", "emu", "--product-key", "PK1"});
    emu_secret = json_string(cli({"device", "add", "emu", "--product-key", "PK1", "--device", "gw1"}), "secret");
    cli({"product", "add", "emu", "--tenant", "T1"});
    tenant_secret = json_string(cli({"device", "add", "emu", "--tenant", "T1", "--device", "gw2"}), "secret");
    cli({"account", "add", "backend", "--password", "backend-pw", "--allow", "read /sys/#"});
    // A hash written by mosquitto_passwd itself.
    cli({"account", "add", "operator", "--password-hash",
         "$7$101$P1hOONOJYF3fE6+D$HKKEKSqUBCkMHJ/RkSA4z9hcjwcUFCKHvyqf97jML4yptOGI8dVSioW3CTajP41hTLujHH7Y80NuKCQBI9lMog=="});
  }
  // Refused with CONNACK 135, and the broker logs the reason (and never the password).
  void expect_refused(const std::string& cid, const std::optional<std::string>& user,
                      const std::optional<std::string>& pw, const std::string& reason) {
    size_t from = broker->log_size();
    connect(cid, user, pw, kNotAuthorized);
    EXPECT_TRUE(broker->wait_for_log("login refused: client '.*" + reason, std::chrono::seconds(3), from))
        << "no log line for: " << reason << "\n" << broker->log().substr(from);
    if (pw && pw->size() >= 8) {
      EXPECT_EQ(broker->log().find(*pw), std::string::npos) << "password in the log";
    }
  }
  std::string krt_secret, emu_secret, tenant_secret;
};

TEST_F(LoginTest, LierdaV2Type0SeedVectorIsAccepted) {
  V2Creds c = v2_creds(kPid, kEui, kSecret, 0, 1675404867);
  EXPECT_EQ(c.password,
            "5EB6BBC8DE5233E632389FA3E8E133F14DC0378BDDE5EDD73E64F682A79D14515CF9C8D4C5A0F469AD773DF9F4BFC8F05876680DBB4A"
            "7CB546B1EE27FF10134B");
  auto dev = connect_v2(c);
  EXPECT_TRUE(dev->connected());
  EXPECT_TRUE(log_has("New client connected from .* as V2_AA30C505.20MQTTJ000121_0_1675404867"));
}

TEST_F(LoginTest, LierdaV2Type1WithCurrentTimestampIsAccepted) {
  auto dev = connect_v2(v2_creds(kPid, kEui, kSecret, 1, unix_now()));
  EXPECT_TRUE(dev->connected());
  // MQTT 3.1.1 devices get the same decision.
  auto old = connect(v2_creds(kPid, kEui, kSecret, 1, unix_now()).client_id + "x", std::nullopt, std::nullopt, 5, 4);
}

TEST_F(LoginTest, CliCredsProduceAWorkingLogin) {
  // Type 1 first: a type 0 session ending in this same second would make a type 1 timestamp of now stale.
  for (const char* type : {"1", "0"}) {
    std::string out = cli({"creds", "lierda", "--product-id", kPid, "--node-eui", kEui, "--type", type});
    auto dev = connect(json_string(out, "client_id"), json_string(out, "username"), json_string(out, "password"));
    EXPECT_TRUE(dev->connected()) << out;
  }
}

TEST_F(LoginTest, LierdaV2Refusals) {
  int64_t now = unix_now();
  V2Creds good = v2_creds(kPid, kEui, kSecret, 1, now);
  expect_refused(good.client_id, good.username, "5EB6BBC8DE5233E632389FA3E8E133F1", "wrong V2 password");
  expect_refused(good.client_id, good.username, v2_creds(kPid, kEui, "00000000000000000000000000000000", 1, now).password,
                 "wrong V2 password");
  expect_refused(good.client_id, kOpenid + "-" + kPid + "-OTHER0001", good.password, "username is not");
  expect_refused("V2_AA30C505.20MQTTJ000121_7_1", good.username, good.password, "malformed V2 client id");
  expect_refused("V2_AA30C505.20MQTTJ000121_1_abc", good.username, good.password, "malformed V2 client id");
  expect_refused("V2_AA30C505.20MQ+TJ00012_0_1", kOpenid + "-AA30C505-20MQ+TJ00012", good.password, "invalid NodeEui");
  expect_refused("V2_AA30C505.20MQ#TJ00012_0_1", kOpenid + "-AA30C505-20MQ#TJ00012", good.password, "invalid NodeEui");
  expect_refused("V2_AA30C505.abc_0_1", kOpenid + "-AA30C505-abc", good.password, "invalid NodeEui");
  expect_refused("V2_DD30C505.20MQTTJ000121_0_1", kOpenid + "-DD30C505-20MQTTJ000121", good.password,
                 "unknown product DD30C505");
  expect_refused("V2_AA30C505.NOSUCHDEV1_0_1", kOpenid + "-AA30C505-NOSUCHDEV1", good.password,
                 "unknown device NOSUCHDEV1");
  V2Creds off = v2_creds("BB30C505", "OFFDEVICE1", kSecret, 0, 1);
  expect_refused(off.client_id, off.username, off.password, "device OFFDEVICE1 is disabled");
  V2Creds offp = v2_creds("CC30C505", "DEVINOFFPRODUCT", kSecret, 0, 1);
  expect_refused(offp.client_id, offp.username, offp.password, "product CC30C505 is disabled");
  V2Creds future = v2_creds(kPid, kEui, kSecret, 1, now + 3600);
  expect_refused(future.client_id, future.username, future.password, "is in the future");
  expect_refused(good.client_id, std::nullopt, std::nullopt, "no username");
  EXPECT_EQ(broker->log().find(kSecret), std::string::npos);
}

TEST_F(LoginTest, Type1PasswordCannotBeReplayedAfterADisconnect) {
  V2Creds c = v2_creds(kPid, kEui, kSecret, 1, unix_now() - 2);
  {
    auto dev = connect_v2(c);
    ASSERT_TRUE(dev->connected());
    dev->disconnect();
  }
  ASSERT_TRUE(log_has("Client V2_AA30C505.20MQTTJ000121_1_.* disconnected"));
  expect_refused(c.client_id, c.username, c.password, "not after the device's last offline time");
  // The offline time reaches Redis, so the refusal survives a broker restart.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  while (redis.cli({"HGET", "iotgate:last_offline:AA30C505", "20MQTTJ000121"}).empty() &&
         std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_GE(std::stoll(redis.cli({"HGET", "iotgate:last_offline:AA30C505", "20MQTTJ000121"})), unix_now() - 5);
  size_t from = broker->log_size();
  broker->restart();
  ASSERT_TRUE(broker->wait_for_log("iotgate: loaded", std::chrono::seconds(10), from));
  expect_refused(c.client_id, c.username, c.password, "not after the device's last offline time");
  // A fresh timestamp after the disconnect works.
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  auto fresh = connect_v2(v2_creds(kPid, kEui, kSecret, 1, unix_now()));
  EXPECT_TRUE(fresh->connected());
}

// Offline times are read at load from the per-product times hash and, for data written before it existed, from
// the device hash itself; the later one counts.
TEST_F(LoginTest, OfflineTimesAreLoadedFromEitherPlace) {
  const std::string device_key = "iotgate:device:" + kPid + ":" + kEui, times_key = "iotgate:last_offline:" + kPid;
  int64_t now = unix_now();
  for (int older_data = 1; older_data >= 0; --older_data) {
    redis.cli({"HSET", device_key, "last_offline", std::to_string(older_data ? now + 30 : now - 3600)});
    redis.cli({"HSET", times_key, kEui, std::to_string(older_data ? now - 3600 : now + 30)});
    size_t from = broker->log_size();
    broker->restart();
    ASSERT_TRUE(broker->wait_for_log("iotgate: loaded", std::chrono::seconds(10), from));
    V2Creds c = v2_creds(kPid, kEui, kSecret, 1, now + 10);  // later than the older time, not the later one
    expect_refused(c.client_id, c.username, c.password, "not after the device's last offline time");
  }
}

TEST_F(LoginTest, LierdaAuthLogin) {
  auto ok = connect(kPid + "-" + kEui, "AUTH-" + kOpenid + "-" + kPid, kKey);
  EXPECT_TRUE(ok->connected());
  auto newdev = connect(kPid + "-NOTYETREGISTERED", "AUTH-" + kOpenid + "-" + kPid, kKey);
  EXPECT_TRUE(newdev->connected());
  expect_refused(kPid + "-" + kEui, "AUTH-" + kOpenid + "-" + kPid, "DB6FACEF35BEBA0517712F0E4BE32937", "wrong ProductKey");
  expect_refused(kPid + "-" + kEui, "AUTH-7ED01E2B-" + kPid, kKey, "OpenID does not own product");
  expect_refused("BB30C505-" + kEui, "AUTH-" + kOpenid + "-" + kPid, kKey, "client id is not");
  expect_refused(kPid + "-ab/cd", "AUTH-" + kOpenid + "-" + kPid, kKey, "invalid NodeEui");
  expect_refused(kPid + "-" + kEui, "AUTH-" + kOpenid, kKey, "malformed AUTH username");
  expect_refused("DD30C505-" + kEui, "AUTH-" + kOpenid + "-DD30C505", kKey, "unknown product DD30C505");
  expect_refused("BB30C505-OFFDEVICE1", "AUTH-" + kOpenid + "-BB30C505", kKey, "device OFFDEVICE1 is disabled");
}

TEST_F(LoginTest, KrtDeviceLoginInBothClientIdForms) {
  auto a = connect("KP1", "KD1", krt_secret);
  EXPECT_TRUE(a->connected());
  auto b = connect("KP1.KD1", "KD1", krt_secret);
  EXPECT_TRUE(b->connected());
  expect_refused("KP1", "KD1", "not-the-secret", "wrong secret");
  expect_refused("KP1.KD2", "KD1", krt_secret, "names another device");
  expect_refused("KP1", "KD1", "prodsecret1", "dynamic registration is off");
  expect_refused("KP1", "KD9", "prodsecret1", "dynamic registration is off");
  expect_refused("KP1", "KD#", krt_secret, "invalid DeviceID");
}

TEST_F(LoginTest, EmuGatewayLogin) {
  auto gw = connect("gw1:client", "gw1", emu_secret);
  EXPECT_TRUE(gw->connected());
  auto gw2 = connect("gw2", "gw2", tenant_secret);
  EXPECT_TRUE(gw2->connected());
  expect_refused("gw1:client", "gw1", tenant_secret, "wrong secret");
  cli({"device", "disable", "PK1", "gw1"});
  EXPECT_TRUE(gw->wait_disconnected(std::chrono::seconds(2)));
  expect_refused("gw1:client", "gw1", emu_secret, "device is disabled");
}

TEST_F(LoginTest, ServiceAccounts) {
  auto app = connect("backend:1", "backend", "backend-pw");
  EXPECT_TRUE(app->connected());
  auto op = connect("operator:1", "operator", "s3cret-pass");
  EXPECT_TRUE(op->connected());
  expect_refused("backend:2", "backend", "backend-pW", "wrong password");
  expect_refused("operator:2", "operator", "", "wrong password");
  expect_refused("backend-1", "backend", "backend-pw", "client id is not .backend. or .backend:...");
  expect_refused("x-1", "nobody", "pw", "unknown user");
  EXPECT_EQ(broker->log().find("backend-pW"), std::string::npos);
}

}  // namespace
}  // namespace iotgate::test
