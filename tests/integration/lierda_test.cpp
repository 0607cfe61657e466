// The platform side of Lierda's data frames: acks and time sync, while the frames still reach subscribers.
#include <rapidjson/document.h>

#include "stack.h"

namespace iotgate::test {
namespace {

class LierdaPlatformTest : public StackTest {
 protected:
  void seed() override {
    add_lierda_product(kPid, 1);
    add_lierda_device(kPid, kEui, kSecret);
    cli({"account", "add", "app", "--password", "app-pw", "--allow", "read /sys/#"});
  }
  const std::string P = "/sys/" + kOpenid + "/" + kPid + "/" + kEui + "/";
};

TEST_F(LierdaPlatformTest, TimeSyncAndReportAcks) {
  auto app = connect("app:1", "app", "app-pw");
  ASSERT_LT(app->subscribe("/sys/#", 1), 128);
  auto dev = connect_v2(v2_creds(kPid, kEui, kSecret, 0, 1));
  int64_t before = unix_now() * 1000;
  EXPECT_EQ(dev->publish(P + "update_time", R"({"MessageId":1231,"HeaderCtrl":29,"Payload":"","Version":"2.0"})", 1), 0);
  auto t = dev->wait_message(P + "update_time_ack");
  ASSERT_TRUE(t);
  rapidjson::Document d;
  d.Parse(t->payload.c_str());
  EXPECT_EQ(d["MessageId"].GetInt(), 1231);
  EXPECT_EQ(d["HeaderCtrl"].GetInt(), 29);
  EXPECT_STREQ(d["Payload"]["Code"].GetString(), "200");
  EXPECT_GE(d["Payload"]["Data"]["timestamp"].GetInt64(), before);
  EXPECT_LE(d["Payload"]["Data"]["timestamp"].GetInt64(), unix_now() * 1000 + 1000);
  EXPECT_STREQ(d["Payload"]["Data"]["timezone"].GetString(), "Asia/Shanghai");

  EXPECT_EQ(dev->publish(P + "uplink", R"({"MessageId":7,"HeaderCtrl":4,"Payload":{"power":99},"Version":"2.0"})", 1), 0);
  auto u = dev->wait_message(P + "uplink_ack");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->payload, R"({"MessageId":7,"HeaderCtrl":4,"Payload":{"Code":"200","Msg":"SUCCESS"},"Version":"2.0"})");
  auto seen = app->wait_message(P + "uplink");  // the data itself still reaches the back end
  ASSERT_TRUE(seen);
  EXPECT_NE(seen->payload.find("\"power\":99"), std::string::npos);

  EXPECT_EQ(dev->publish(P + "model/event/alarm/report", R"({"MessageId":8,"HeaderCtrl":17,"Payload":{"a":1},"Version":"2.0"})", 1), 0);
  EXPECT_TRUE(dev->wait_message(P + "model/event/alarm/report_ack"));
  EXPECT_EQ(dev->publish(P + "model/hex", "00f0ff013FA00000", 1), 0);
  auto hex = dev->wait_message(P + "model/hex_ack");
  ASSERT_TRUE(hex);
  EXPECT_NE(hex->payload.find("\"HeaderCtrl\":28"), std::string::npos);
  // A wrong HeaderCtrl is answered with 4001 and logged.
  EXPECT_EQ(dev->publish(P + "model/property/report", R"({"MessageId":9,"HeaderCtrl":4,"Payload":{},"Version":"2.0"})", 1), 0);
  auto bad = dev->wait_message(P + "model/property/report_ack");
  ASSERT_TRUE(bad);
  EXPECT_NE(bad->payload.find("4001"), std::string::npos);
  EXPECT_TRUE(log_has("model/property/report from '.*' answered with Code 4001"));
  // The acks went to the device only.
  EXPECT_FALSE(app->wait_message(P + "+_ack", std::chrono::milliseconds(200)));
}

class NoAcksTest : public LierdaPlatformTest {
 protected:
  std::map<std::string, std::string> plugin_options() override { return {{"lierda_acks", "false"}}; }
};

TEST_F(NoAcksTest, AcksCanBeLeftToTheBackEnd) {
  auto dev = connect_v2(v2_creds(kPid, kEui, kSecret, 0, 1));
  EXPECT_EQ(dev->publish(P + "uplink", R"({"MessageId":7,"HeaderCtrl":4,"Payload":{},"Version":"2.0"})", 1), 0);
  EXPECT_FALSE(dev->wait_message(P + "uplink_ack", std::chrono::milliseconds(500)));
}

}  // namespace
}  // namespace iotgate::test
