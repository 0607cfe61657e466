// The credential exchanges end to end: Lierda /sys/device/auth and KRT dynamic registration, then a login
// with the issued secret.
#include <rapidjson/document.h>

#include "iotgate/crypto.h"
#include "iotgate/lierda/lierda.h"
#include "iotgate/ids.h"
#include "stack.h"

namespace iotgate::test {
namespace {


std::string auth_request(const std::string& pid, const std::string& eui, int type, const std::string& version = "2.0",
                         const std::string& message_id = "1231") {
  return R"({"MessageId":)" + message_id + R"(,"HeaderCtrl":1,"Payload":{"OpenID":")" + kOpenid +
         R"(","ProductID":")" + pid + R"(","NodeEui":")" + eui + R"(","Type":)" + std::to_string(type) +
         R"(},"Version":")" + version + R"("})";
}

class LierdaAuthExchangeTest : public StackTest {
 protected:
  void seed() override {
    add_lierda_product("A0000000", 0);                // free registration
    add_lierda_product("A1111111", 1);                // pre-registered
    add_lierda_device("A1111111", "PREREG001", kSecret);
    add_lierda_product("A2222222", 2);                // one device one secret
    add_lierda_device("A2222222", "OWNSECRET1", kSecret);
    add_lierda_product("AEEEEEEE", 0, /*encrypted=*/true);
  }
  std::map<std::string, std::string> plugin_options() override { return {{"log_level", "debug"}}; }

  // AUTH login, subscribe to the downlink, send the request, return the reply payload (or "" on timeout).
  std::string exchange(const std::string& pid, const std::string& eui, const std::string& request) {
    MqttClient c(pid + "-" + eui);
    EXPECT_EQ(c.connect(broker->port(), "AUTH-" + kOpenid + "-" + pid, kKey), 0);
    std::string downlink = "/sys/" + kOpenid + "/" + pid + "/" + eui + "/downlink";
    EXPECT_LT(c.subscribe(downlink, 1), 128);
    EXPECT_EQ(c.publish("/sys/device/auth", request, 1), 0);
    auto m = c.wait_message(downlink, std::chrono::seconds(5));
    return m ? m->payload : "";
  }
};

TEST_F(LierdaAuthExchangeTest, Type0CreatesTheDeviceStoresTheSecretThenV2LoginWorks) {
  auto watcher = observer("#");  // a superuser on '#' must never see the secret
  std::string reply = exchange("A0000000", "NEWDEVICE01", auth_request("A0000000", "NEWDEVICE01", 0));
  ASSERT_FALSE(reply.empty()) << broker->log();
  auto d = parse(reply);
  EXPECT_EQ(d["MessageId"].GetInt(), 1231);
  EXPECT_EQ(d["HeaderCtrl"].GetInt(), 1);
  EXPECT_STREQ(d["Version"].GetString(), "2.0");
  EXPECT_EQ(d["Payload"]["Code"].GetInt(), 0);
  std::string secret = d["Payload"]["DeviceSecret"].GetString();
  EXPECT_TRUE(is_hex_key(secret) && secret == [&] { std::string u = secret; for (char& ch : u) ch = static_cast<char>(toupper(ch)); return u; }()) << secret;
  // Persisted before the device was told.
  EXPECT_EQ(redis.cli({"HGET", "iotgate:device:A0000000:NEWDEVICE01", "secret"}), secret);
  EXPECT_EQ(redis.cli({"HGET", "iotgate:device:A0000000:NEWDEVICE01", "origin"}), "auth");
  EXPECT_EQ(redis.cli({"SISMEMBER", "iotgate:devices:A0000000", "NEWDEVICE01"}), "1");
  // Never in a log, never seen by another subscriber.
  EXPECT_EQ(broker->log().find(secret), std::string::npos);
  for (const auto& m : watcher->drain()) EXPECT_EQ(m.payload.find(secret), std::string::npos) << m.topic;
  // A second request returns the same secret.
  auto again = parse(exchange("A0000000", "NEWDEVICE01", auth_request("A0000000", "NEWDEVICE01", 0, "2.0", "\"77\"")));
  EXPECT_STREQ(again["Payload"]["DeviceSecret"].GetString(), secret.c_str());
  EXPECT_STREQ(again["MessageId"].GetString(), "77");  // echoed as the string it came as
  // The issued secret logs in.
  auto dev = connect_v2(v2_creds("A0000000", "NEWDEVICE01", secret, 1, unix_now()));
  EXPECT_TRUE(dev->connected());
}

TEST_F(LierdaAuthExchangeTest, Type1ReturnsThePreRegisteredSecretAndRefusesUnknownDevices) {
  auto d = parse(exchange("A1111111", "PREREG001", auth_request("A1111111", "PREREG001", 1)));
  EXPECT_EQ(d["Payload"]["Code"].GetInt(), 0);
  EXPECT_STREQ(d["Payload"]["DeviceSecret"].GetString(), kSecret.c_str());
  auto unknown = parse(exchange("A1111111", "NOTREG0001", auth_request("A1111111", "NOTREG0001", 1)));
  EXPECT_EQ(unknown["Payload"]["Code"].GetInt(), 4);
  EXPECT_FALSE(unknown["Payload"].HasMember("DeviceSecret"));
  EXPECT_EQ(redis.cli({"EXISTS", "iotgate:device:A1111111:NOTREG0001"}), "0");
}

TEST_F(LierdaAuthExchangeTest, ErrorCodes) {
  auto code = [&](const std::string& pid, const std::string& eui, const std::string& req) {
    auto d = parse(exchange(pid, eui, req));
    return d.IsObject() && d.HasMember("Payload") ? d["Payload"]["Code"].GetInt() : -1;
  };
  EXPECT_EQ(code("A1111111", "PREREG001", auth_request("A1111111", "PREREG001", 0)), 5);         // wrong Type
  EXPECT_EQ(code("A1111111", "PREREG001", auth_request("A1111111", "PREREG001", 1, "1.0")), 6);  // wrong Version
  EXPECT_EQ(code("A1111111", "PREREG001", auth_request("A1111111", "OTHERDEV01", 1)), 4);        // another device
  cli({"device", "disable", "A1111111", "PREREG001"});
  // Disabling kicks and refuses even the AUTH session.
  MqttClient c("A1111111-PREREG001");
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  int rc = 0;
  while ((rc = c.connect(broker->port(), "AUTH-" + kOpenid + "-A1111111", kKey)) == 0 &&
         std::chrono::steady_clock::now() < deadline) {
    c.disconnect();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(rc, 135);
}

TEST_F(LierdaAuthExchangeTest, MalformedRequestsGetNoAnswerAndALogLine) {
  MqttClient c("A1111111-PREREG001");
  ASSERT_EQ(c.connect(broker->port(), "AUTH-" + kOpenid + "-A1111111", kKey), 0);
  ASSERT_LT(c.subscribe("/sys/" + kOpenid + "/A1111111/PREREG001/downlink", 1), 128);
  // Refused (PUBACK 135 on MQTT 5), so no other subscriber receives them either.
  for (std::string bad : {std::string("not json"), std::string("[1]"), std::string(R"({"HeaderCtrl":4})"),
                          std::string("\0\xff\xfe", 3)})
    EXPECT_EQ(c.publish("/sys/device/auth", bad, 1), 135);
  EXPECT_EQ(c.publish("/sys/device/auth", std::string(200000, '['), 1), 135);
  EXPECT_FALSE(c.wait_message("#", std::chrono::milliseconds(500)));
  EXPECT_TRUE(log_has("auth request from 'A1111111-PREREG001' refused: not a JSON object"));
  EXPECT_TRUE(log_has("auth request from 'A1111111-PREREG001' refused: HeaderCtrl is not 1"));
  EXPECT_TRUE(log_has("larger than max_payload"));
  EXPECT_TRUE(broker->running());
  // Still answers a good request afterwards.
  EXPECT_EQ(c.publish("/sys/device/auth", auth_request("A1111111", "PREREG001", 1), 1), 0);
  EXPECT_TRUE(c.wait_message("#", std::chrono::seconds(3)));
}

TEST_F(LierdaAuthExchangeTest, Type2DeviceIsNeverSentItsSecret) {
  auto d = parse(exchange("A2222222", "OWNSECRET1", auth_request("A2222222", "OWNSECRET1", 2)));
  EXPECT_EQ(d["Payload"]["Code"].GetInt(), 0);
  EXPECT_FALSE(d["Payload"].HasMember("DeviceSecret"));
}

TEST_F(LierdaAuthExchangeTest, EncryptedProductGetsSessionIdAndNonceAndTheKeyIsStored) {
  auto d = parse(exchange("AEEEEEEE", "CRYPTDEV01", auth_request("AEEEEEEE", "CRYPTDEV01", 0)));
  ASSERT_EQ(d["Payload"]["Code"].GetInt(), 0);
  std::string session_id = d["Payload"]["SessionID"].GetString();
  uint32_t nonce = d["Payload"]["Nonce"].GetUint();
  std::string expected = *lierda_session_key(kKey, session_id, nonce);
  EXPECT_EQ(redis.cli({"HGET", "iotgate:device:AEEEEEEE:CRYPTDEV01", "session_key"}), expected);
  EXPECT_EQ(redis.cli({"HGET", "iotgate:device:AEEEEEEE:CRYPTDEV01", "session_id"}), session_id);
  EXPECT_GT(std::stoll(redis.cli({"HGET", "iotgate:device:AEEEEEEE:CRYPTDEV01", "session_key_expires"})),
            unix_now() + 172000);
  EXPECT_EQ(broker->log().find(expected), std::string::npos);
}

// An encrypted product's report acks are encrypted with the device's session key (the one its session holds).
TEST_F(LierdaAuthExchangeTest, EncryptedProductGetsItsReportAcksEncryptedWithTheSessionKey) {
  auto d = parse(exchange("AEEEEEEE", "CRYPTDEV03", auth_request("AEEEEEEE", "CRYPTDEV03", 0)));
  ASSERT_EQ(d["Payload"]["Code"].GetInt(), 0);
  std::string secret = d["Payload"]["DeviceSecret"].GetString();
  std::string key = *lierda_session_key(kKey, d["Payload"]["SessionID"].GetString(), d["Payload"]["Nonce"].GetUint());
  V2Creds creds = v2_creds("AEEEEEEE", "CRYPTDEV03", secret, 1, unix_now());
  MqttClient dev(creds.client_id);
  ASSERT_EQ(dev.connect(broker->port(), creds.username, creds.password), 0);
  std::string prefix = "/sys/" + kOpenid + "/AEEEEEEE/CRYPTDEV03/";
  std::string frame = R"({"MessageId":77,"HeaderCtrl":4,"Payload":")" +
                      to_hex_upper(aes128_ecb_encrypt(*from_hex(key), R"({"power":99})")) + R"(","Version":"2.0"})";
  EXPECT_EQ(dev.publish(prefix + "uplink", frame, 1), 0);
  auto m = dev.wait_message(prefix + "uplink_ack", std::chrono::seconds(3));
  ASSERT_TRUE(m) << broker->log();
  auto ack = parse(m->payload);
  EXPECT_EQ(ack["MessageId"].GetInt(), 77);
  ASSERT_TRUE(ack["Payload"].IsString()) << m->payload;
  auto plain = aes128_ecb_decrypt(*from_hex(key), *from_hex(ack["Payload"].GetString()));
  ASSERT_TRUE(plain) << m->payload;
  EXPECT_EQ(*plain, R"({"Code":"200","Msg":"SUCCESS"})");
}

TEST_F(LierdaAuthExchangeTest, ExpiredSessionKeyIsReplacedOnConnectWithHeaderCtrl3) {
  auto d = parse(exchange("AEEEEEEE", "CRYPTDEV02", auth_request("AEEEEEEE", "CRYPTDEV02", 0)));
  ASSERT_EQ(d["Payload"]["Code"].GetInt(), 0);
  std::string secret = d["Payload"]["DeviceSecret"].GetString();
  std::string old_id = d["Payload"]["SessionID"].GetString();
  // Expire it behind the plugin's back, then announce the change as the CLI would.
  redis.cli({"HSET", "iotgate:device:AEEEEEEE:CRYPTDEV02", "session_key_expires", "1"});
  redis.cli({"XADD", "iotgate:changes", "*", "kind", "device", "id", "AEEEEEEE:CRYPTDEV02"});
  std::this_thread::sleep_for(std::chrono::milliseconds(800));
  V2Creds creds = v2_creds("AEEEEEEE", "CRYPTDEV02", secret, 1, unix_now());
  MqttClient dev(creds.client_id);
  ASSERT_EQ(dev.connect(broker->port(), creds.username, creds.password), 0);
  auto m = dev.wait_message("/sys/" + kOpenid + "/AEEEEEEE/CRYPTDEV02/downlink", std::chrono::seconds(3));
  ASSERT_TRUE(m) << "no HeaderCtrl 3 (direct publish needs no subscription)";
  auto msg = parse(m->payload);
  EXPECT_EQ(msg["HeaderCtrl"].GetInt(), 3);
  std::string new_id = msg["Payload"]["SessionID"].GetString();
  EXPECT_NE(new_id, old_id);
  EXPECT_EQ(redis.cli({"HGET", "iotgate:device:AEEEEEEE:CRYPTDEV02", "session_key"}),
            *lierda_session_key(kKey, new_id, msg["Payload"]["Nonce"].GetUint()));
}

TEST_F(LierdaAuthExchangeTest, StoreUnavailableAnswersBusyAndCreatesNothing) {
  MqttClient c("A0000000-BUSYDEV001");
  ASSERT_EQ(c.connect(broker->port(), "AUTH-" + kOpenid + "-A0000000", kKey), 0);
  std::string downlink = "/sys/" + kOpenid + "/A0000000/BUSYDEV001/downlink";
  ASSERT_LT(c.subscribe(downlink, 1), 128);
  redis.pause();
  EXPECT_EQ(c.publish("/sys/device/auth", auth_request("A0000000", "BUSYDEV001", 0), 1), 0);
  auto m = c.wait_message(downlink, std::chrono::seconds(5));
  redis.resume();
  ASSERT_TRUE(m);
  auto d = parse(m->payload);
  EXPECT_EQ(d["Payload"]["Code"].GetInt(), 1);
  EXPECT_FALSE(d["Payload"].HasMember("DeviceSecret"));
}

class KrtRegistrationTest : public StackTest {
 protected:
  void seed() override {
    cli({"product", "add", "krt", "--product-id", "KP1", "--product-secret", "prodsecret1", "--dynamic-register",
         "--auto-create", "--limit", "2"});
    cli({"product", "add", "krt", "--product-id", "KP2", "--product-secret", "prodsecret2", "--dynamic-register"});
    cli({"device", "add", "krt", "--product-id", "KP2", "--device-id", "PRE1", "--secret", "pre1-secret"});
  }
  // Registration login, request, answer.
  std::string register_device(MqttClient& c, const std::string& pid, const std::string& did,
                              const std::string& product_secret, const std::string& id = "\"r1\"") {
    EXPECT_EQ(c.connect(broker->port(), did, product_secret), 0);
    std::string set = "/sys/" + pid + "/" + did + "/thing/register/set";
    EXPECT_LT(c.subscribe(set, 1), 128);
    EXPECT_EQ(c.publish("/sys/" + pid + "/" + did + "/thing/register/post",
                        R"({"CMD":20,"ID":)" + id + R"(,"PRODUCT_ID":")" + pid + R"(","DEVICE_ID":")" + did + R"("})", 1),
              0);
    auto m = c.wait_message(set, std::chrono::seconds(5));
    return m ? m->payload : "";
  }
};

TEST_F(KrtRegistrationTest, AutoCreateIssueConfirmActivateThenDeviceLogin) {
  MqttClient reg("KP1.DEV1");
  auto d = parse(register_device(reg, "KP1", "DEV1", "prodsecret1"));
  ASSERT_TRUE(d.IsObject()) << broker->log();
  EXPECT_EQ(d["CMD"].GetInt(), 20);
  EXPECT_STREQ(d["ID"].GetString(), "r1");
  EXPECT_EQ(d["CODE"].GetInt(), 0);
  std::string secret = d["DEVICE_SECRET"].GetString();
  EXPECT_STREQ(d["DeviceSecret"].GetString(), secret.c_str());
  EXPECT_EQ(redis.cli({"HGET", "iotgate:device:KP1:DEV1", "secret"}), secret);
  EXPECT_EQ(redis.cli({"HGET", "iotgate:device:KP1:DEV1", "origin"}), "auto");
  EXPECT_EQ(broker->log().find(secret), std::string::npos);
  // A repeated request before confirmation gets the same secret.
  EXPECT_EQ(reg.publish("/sys/KP1/DEV1/thing/register/post", R"({"CMD":20,"ID":"r2"})", 1), 0);
  auto again = reg.wait_message("/sys/KP1/DEV1/thing/register/set");
  ASSERT_TRUE(again);
  EXPECT_STREQ(parse(again->payload)["DEVICE_SECRET"].GetString(), secret.c_str());
  // Confirmation: activated, registration session closed.
  EXPECT_EQ(reg.publish("/sys/KP1/DEV1/thing/register/post", R"({"CMD":21,"ID":"r2","BACK":"OK"})", 1), 0);
  EXPECT_TRUE(reg.wait_disconnected(std::chrono::seconds(3)));
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  while (redis.cli({"HGET", "iotgate:device:KP1:DEV1", "activated"}) != "1" && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(redis.cli({"HGET", "iotgate:device:KP1:DEV1", "activated"}), "1");
  // The ProductSecret no longer logs this device in; the issued secret does, in both client id forms.
  connect("KP1.DEV1", "DEV1", "prodsecret1", 135);
  EXPECT_TRUE(log_has("device DEV1 is already activated"));
  auto dev = connect("KP1.DEV1", "DEV1", secret);
  EXPECT_TRUE(dev->connected());
  auto dev2 = connect("KP1", "DEV1", secret);
  EXPECT_TRUE(dev2->connected());
  // A device session may not talk on the registration topics.
  EXPECT_EQ(dev2->publish("/sys/KP1/DEV1/thing/register/post", R"({"CMD":20,"ID":"x"})", 1), 135);
}

TEST_F(KrtRegistrationTest, PreCreatedDeviceRegistersAndGetsItsStoredSecret) {
  MqttClient reg("KP2");
  auto d = parse(register_device(reg, "KP2", "PRE1", "prodsecret2"));
  ASSERT_TRUE(d.IsObject());
  EXPECT_EQ(d["CODE"].GetInt(), 0);
  EXPECT_STREQ(d["DEVICE_SECRET"].GetString(), "pre1-secret");
  // KP2 does not auto-create.
  connect("KP2.NEW9", "NEW9", "prodsecret2", 135);
  EXPECT_TRUE(log_has("unknown device NEW9"));
}

TEST_F(KrtRegistrationTest, AutoCreationStopsAtTheLimit) {
  for (const char* did : {"A1", "A2"}) {
    MqttClient reg(std::string("KP1.") + did);
    EXPECT_EQ(parse(register_device(reg, "KP1", did, "prodsecret1"))["CODE"].GetInt(), 0);
  }
  EXPECT_EQ(redis.cli({"HGET", "iotgate:product:KP1", "auto_created"}), "2");
  std::this_thread::sleep_for(std::chrono::milliseconds(700));  // the new devices reach the broker's memory
  connect("KP1.A3", "A3", "prodsecret1", 135);
  EXPECT_TRUE(log_has("auto-creation limit of product KP1 reached"));
  EXPECT_EQ(redis.cli({"EXISTS", "iotgate:device:KP1:A3"}), "0");
}

TEST_F(KrtRegistrationTest, RegistrationSessionMayOnlyUseItsTwoTopics) {
  MqttClient reg("KP1.DEV5");
  ASSERT_EQ(reg.connect(broker->port(), "DEV5", "prodsecret1"), 0);
  EXPECT_EQ(reg.publish("/sys/KP1/DEV5/thing/ota/post", "{}", 1), 135);
  EXPECT_EQ(reg.publish("/sys/KP1/DEV6/thing/register/post", "{}", 1), 135);
  EXPECT_GE(reg.subscribe("/sys/KP1/DEV5/thing/#", 1), 128);
  EXPECT_LT(reg.subscribe("/sys/KP1/DEV5/thing/register/set", 1), 128);
  // Garbage is ignored with a log line; the broker stays up.
  EXPECT_EQ(reg.publish("/sys/KP1/DEV5/thing/register/post", "{{{", 1), 135);
  EXPECT_TRUE(log_has("register message from 'KP1.DEV5' refused: not a JSON object"));
  EXPECT_TRUE(broker->running());
}

}  // namespace
}  // namespace iotgate::test
