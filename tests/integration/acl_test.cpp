// ACL allow and deny for publish and subscribe of each session kind, against the real broker.
#include "stack.h"

namespace iotgate::test {
namespace {

constexpr int kDenied = 135;
const std::string P = "/sys/" + kOpenid + "/" + kPid + "/" + kEui + "/";
const std::string Other = "/sys/" + kOpenid + "/" + kPid + "/OTHERDEV01/";

class AclTest : public StackTest {
 protected:
  void seed() override {
    add_lierda_product(kPid, 1);
    add_lierda_device(kPid, kEui, kSecret);
    add_lierda_device(kPid, "OTHERDEV01", kSecret);
    cli({"product", "add", "krt", "--product-id", "KP1", "--product-secret", "product-secret-1", "--dynamic-register"});
    cli({"device", "add", "krt", "--product-id", "KP1", "--device-id", "KD1", "--secret", "kd1-secret"});
    cli({"product", "add", "emu", "--product-key", "PK1"});
    cli({"device", "add", "emu", "--product-key", "PK1", "--device", "gw1", "--secret", "gw1-secret"});
    cli({"product", "add", "emu", "--tenant", "T1"});
    cli({"device", "add", "emu", "--tenant", "T1", "--device", "gw2", "--secret", "gw2-secret"});
    cli({"account", "add", "app", "--password", "app-pw", "--allow", "read /sys/#", "--allow",
         "write /sys/+/+/+/downlink", "--allow", "readwrite apps/%u/%c/#"});
    cli({"account", "add", "root", "--password", "root-pw", "--superuser"});
  }
  std::unique_ptr<MqttClient> v2() { return connect_v2(v2_creds(kPid, kEui, kSecret, 0, 1)); }
};

TEST_F(AclTest, LierdaV2DevicePublishesOnlyItsUplinkTopicsAndReadsOnlyItsDownlinkTopics) {
  auto obs = observer();
  auto dev = v2();
  EXPECT_EQ(dev->publish(P + "uplink", "u1", 1), 0);
  EXPECT_EQ(dev->publish(P + "firmware_report", R"({"MessageId":1,"HeaderCtrl":8,"Payload":{"SoftVer":"1"},"Version":"2.0"})", 1), 0);
  EXPECT_EQ(dev->publish(P + "model/event/alarm/report", "e", 1), 0);
  EXPECT_TRUE(obs->wait_message(P + "uplink"));
  EXPECT_EQ(dev->publish(Other + "uplink", "spoof", 1), kDenied);
  EXPECT_EQ(dev->publish(P + "downlink", "self", 1), kDenied);
  EXPECT_EQ(dev->publish("/sys/device/auth", "{}", 1), kDenied);
  EXPECT_EQ(dev->publish("elsewhere", "x", 1), kDenied);
  EXPECT_FALSE(obs->wait_message(Other + "uplink", std::chrono::milliseconds(300)));
  EXPECT_TRUE(log_has("denied publish to '" + Other + "uplink'"));

  EXPECT_LT(dev->subscribe(P + "+", 1), 128);  // the seed's wildcard
  EXPECT_LT(dev->subscribe(P + "downloadlink", 1), 128);
  EXPECT_GE(dev->subscribe(Other + "+", 1), 128);
  EXPECT_GE(dev->subscribe("/sys/#", 1), 128);
  EXPECT_GE(dev->subscribe("#", 1), 128);

  auto app = connect("app:1", "app", "app-pw");
  EXPECT_EQ(app->publish(P + "downlink", "d1", 1), 0);
  auto m = dev->wait_message(P + "downlink");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->payload, "d1");
  EXPECT_EQ(app->publish(Other + "downlink", "not-for-you", 1), 0);
  EXPECT_FALSE(dev->wait_message(Other + "#", std::chrono::milliseconds(300)));
}

TEST_F(AclTest, LierdaAuthSessionOnlyAsksAndListens) {
  auto c = connect(kPid + "-" + kEui, "AUTH-" + kOpenid + "-" + kPid, kKey);
  EXPECT_LT(c->subscribe(P + "downlink", 1), 128);
  EXPECT_GE(c->subscribe(P + "+", 1), 128);
  EXPECT_GE(c->subscribe(P + "ota_notify", 1), 128);
  EXPECT_EQ(c->publish(P + "uplink", "x", 1), kDenied);
  EXPECT_EQ(c->publish("/sys/device/auth",
                       R"({"MessageId":1,"HeaderCtrl":1,"Payload":{"OpenID":"7ED01E2A","ProductID":"AA30C505",)"
                       R"("NodeEui":"20MQTTJ000121","Type":1},"Version":"2.0"})",
                       1),
            0);
}

TEST_F(AclTest, KrtDeviceStaysInItsThingSubtree) {
  auto dev = connect("KP1.KD1", "KD1", "kd1-secret");
  EXPECT_EQ(dev->publish("/sys/KP1/KD1/thing/ota/post", R"({"CMD":10,"ID":"1","FW_VERSION":"1.0"})", 1), 0);
  EXPECT_EQ(dev->publish("/sys/KP1/KD1/thing/ota/set", "x", 1), kDenied);
  EXPECT_EQ(dev->publish("/sys/KP1/KD2/thing/ota/post", "x", 1), kDenied);
  EXPECT_LT(dev->subscribe("/sys/KP1/KD1/thing/ota/set", 1), 128);
  EXPECT_GE(dev->subscribe("/sys/KP1/+/thing/ota/set", 1), 128);
  auto root = connect("root:1", "root", "root-pw");
  EXPECT_EQ(root->publish("/sys/KP1/KD1/thing/ota/set", "push", 1), 0);
  EXPECT_TRUE(dev->wait_message("/sys/KP1/KD1/thing/ota/set"));
}

TEST_F(AclTest, EmuGatewaysPublishResultsAndReadCommandsOfTheirOwnPrefix) {
  auto gw = connect("gw1", "gw1", "gw1-secret");
  const std::string result = R"({"sub_device_id":2,"data":{"device_id":2,"download_status":1}})";
  EXPECT_EQ(gw->publish("v1/wudun/PK1/gw1/ota/emu_upgrade/result", result, 1), 0);
  EXPECT_EQ(gw->publish("v1/wudun/PK1/gw1/ota/emu_version/command", "{}", 1), kDenied);
  EXPECT_EQ(gw->publish("v1/wudun/PK1/gw9/ota/emu_version/result", "{}", 1), kDenied);
  EXPECT_EQ(gw->publish("v1/user/T1/gw1/ota/emu_version/result", "{}", 1), kDenied);
  EXPECT_LT(gw->subscribe("v1/wudun/PK1/gw1/ota/+/command", 1), 128);
  EXPECT_GE(gw->subscribe("v1/wudun/PK1/gw1/ota/#", 1), 128);
  EXPECT_GE(gw->subscribe("v1/wudun/PK1/+/ota/+/command", 1), 128);
  auto tenant_gw = connect("gw2", "gw2", "gw2-secret");
  EXPECT_EQ(tenant_gw->publish("v1/user/T1/gw2/ota/emu_upgrade/result", result, 1), 0);
  EXPECT_EQ(tenant_gw->publish("v1/wudun/T1/gw2/ota/emu_upgrade/result", "{}", 1), kDenied);
  auto root = connect("root:1", "root", "root-pw");
  EXPECT_EQ(root->publish("v1/wudun/PK1/gw1/ota/emu_version/command", "cmd", 1), 0);
  EXPECT_TRUE(gw->wait_message("v1/wudun/PK1/gw1/ota/+/command"));
}

TEST_F(AclTest, ServiceAccountRulesWithSubstitution) {
  auto app = connect("app:c1", "app", "app-pw");
  EXPECT_LT(app->subscribe("/sys/#", 1), 128);
  EXPECT_LT(app->subscribe("/sys/+/+/+/uplink", 1), 128);
  EXPECT_GE(app->subscribe("#", 1), 128);
  EXPECT_GE(app->subscribe("other/#", 1), 128);
  EXPECT_EQ(app->publish("/sys/a/b/c/downlink", "x", 1), 0);
  EXPECT_EQ(app->publish("/sys/a/b/c/uplink", "x", 1), kDenied);
  EXPECT_EQ(app->publish("apps/app/app:c1/state", "x", 1), 0);
  EXPECT_EQ(app->publish("apps/app/app:c2/state", "x", 1), kDenied);
  EXPECT_LT(app->subscribe("apps/app/app:c1/#", 1), 128);
  EXPECT_GE(app->subscribe("apps/app/+/#", 1), 128);
  auto root = connect("root:1", "root", "root-pw");
  EXPECT_LT(root->subscribe("#", 1), 128);
  EXPECT_EQ(root->publish("anything/at/all", "x", 1), 0);
}

TEST_F(AclTest, WillsAreCheckedLikePublishes) {
  auto obs = observer();
  {
    V2Creds c = v2_creds(kPid, kEui, kSecret, 0, 1);
    MqttClient dev(c.client_id);
    dev.set_will(P + "uplink", "gone", 1);
    ASSERT_EQ(dev.connect(broker->port(), c.username, c.password), 0);
    dev.drop_connection();
  }
  auto will = obs->wait_message(P + "uplink", std::chrono::seconds(3));
  ASSERT_TRUE(will);
  EXPECT_EQ(will->payload, "gone");
  {
    V2Creds c = v2_creds(kPid, kEui, kSecret, 0, 2);
    MqttClient dev(c.client_id);
    dev.set_will(Other + "uplink", "spoofed will", 1);
    ASSERT_EQ(dev.connect(broker->port(), c.username, c.password), 0);
    dev.drop_connection();
  }
  EXPECT_FALSE(obs->wait_message(Other + "uplink", std::chrono::milliseconds(700)));
}

class RetainSourceTest : public AclTest {
 protected:
  std::vector<std::string> extra_conf() override { return {"check_retain_source true"}; }
};

TEST_F(RetainSourceTest, RetainedMessageOfAGoneDeviceIsStillDelivered) {
  {
    auto dev = v2();
    EXPECT_EQ(dev->publish(P + "config_report", "retained-config", 1, true), 0);
    dev->disconnect();
  }
  auto app = connect("app:1", "app", "app-pw");
  ASSERT_LT(app->subscribe(P + "config_report", 1), 128);
  auto m = app->wait_message(P + "config_report", std::chrono::seconds(3));
  ASSERT_TRUE(m);
  EXPECT_EQ(m->payload, "retained-config");
  // Once the device is deleted, its retained message is no longer delivered (its right is gone).
  cli({"device", "delete", kPid, kEui});
  std::this_thread::sleep_for(std::chrono::milliseconds(800));
  auto app2 = connect("app:2", "app", "app-pw");
  ASSERT_LT(app2->subscribe(P + "config_report", 1), 128);
  EXPECT_FALSE(app2->wait_message(P + "config_report", std::chrono::milliseconds(700)));
}

}  // namespace
}  // namespace iotgate::test
