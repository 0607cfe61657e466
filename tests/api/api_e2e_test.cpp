// End to end: a task created and approved over HTTP drives a real Lierda device on a real mosquitto with the
// plugin to "succeeded", and the API reports the progress the plugin wrote.
#include <rapidjson/document.h>

#include "api_fixture.h"
#include "stack.h"

namespace iotgate::test {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
const std::string kMd5 = "0123456789abcdef0123456789abcdef";

class ApiEndToEndTest : public StackTest {
 protected:
  void seed() override {
    add_lierda_product(kPid, 1);
    add_lierda_device(kPid, "E2EDEV01", kSecret);
  }
  std::string prefix(const std::string& eui) { return "/sys/" + kOpenid + "/" + kPid + "/" + eui + "/"; }
  // a firmware_report; true when it was acked
  bool report(MqttClient& dev, const std::string& version) {
    std::string payload = R"({"MessageId":7,"HeaderCtrl":8,"Payload":{"HardVer":"h1","SoftVer":")" + version +
                          R"(","Type":2},"Version":"2.0"})";
    if (dev.publish(prefix("E2EDEV01") + "firmware_report", payload, 1) != 0) return false;
    return dev.wait_message(prefix("E2EDEV01") + "firmware_report_ack", seconds(3)).has_value();
  }
};

TEST_F(ApiEndToEndTest, TaskApprovedOverHttpUpgradesADevice) {
  ApiProcess api(redis);
  ApiClient alice(api.port(), make_token(redis, "alice"));
  ApiClient bob(api.port(), make_token(redis, "bob"));
  const std::string base = "/v2/upgrade/firmware/";
  auto created = alice.call("POST", base + "task",
                            R"({"product_id":")" + kPid + R"(","name":"fw-2.0","description":"e2e","from_version":"1.0",)"
                            R"("target_version":"2.0","target_version_url":"http://fw.example/2.0.bin","target_version_md5":")" +
                                kMd5 + R"(","target_version_size":"4096","type":"1","identify":"0"})",
                            {{"Api-Version", "2"}});
  ASSERT_EQ(created.status, 200) << created.body;
  const std::string task = created.str("id");
  ASSERT_EQ(alice.put(base + "tasks/" + task + "/submit-audit", R"({"audit_member_id":"bob"})").status, 200);

  auto dev = connect_v2(v2_creds(kPid, "E2EDEV01", kSecret, 0, 1));
  ASSERT_TRUE(dev && dev->connected());
  ASSERT_TRUE(report(*dev, "1.0"));
  EXPECT_FALSE(dev->wait_message(prefix("E2EDEV01") + "ota_notify", milliseconds(500))) << "notified before approval";

  // approved over HTTP: the broker has the running task within a second
  ASSERT_EQ(bob.put(base + "tasks/" + task + "/audit", R"({"audit_result":1})").status, 200);
  auto approved = std::chrono::steady_clock::now();
  std::optional<Message> notify;
  while (!notify && std::chrono::steady_clock::now() - approved < seconds(3)) {
    ASSERT_TRUE(report(*dev, "1.0"));
    notify = dev->wait_message(prefix("E2EDEV01") + "ota_notify", milliseconds(100));
  }
  ASSERT_TRUE(notify) << broker->log();
  auto took = std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - approved);
  EXPECT_LT(took.count(), 1000) << "ota_notify " << took.count() << " ms after the approval";
  std::printf("ota_notify %lld ms after the approval over HTTP\n", static_cast<long long>(took.count()));
  rapidjson::Document n;
  n.Parse(notify->payload.c_str());
  ASSERT_TRUE(n.IsObject());
  EXPECT_STREQ(n["Payload"]["Url"].GetString(), "http://fw.example/2.0.bin");
  EXPECT_STREQ(n["Payload"]["SoftVer"].GetString(), "2.0");

  std::string down_id = n["Payload"]["DownID"].GetString();
  ASSERT_EQ(dev->publish(prefix("E2EDEV01") + "ota_notify_ack",
                         R"({"MessageId":8,"HeaderCtrl":9,"Payload":{"DownID":")" + down_id + R"("},"Version":"2.0"})", 1),
            0);
  auto state = [&](const char* s) {
    auto p = alice.get(base + "tasks/" + task + "/progress");
    return p.status == 200 ? p["devices_by_state"][s].GetInt() : -1;
  };
  auto wait_state = [&](const char* s, int want) {
    int n = -1;
    for (int i = 0; i < 50 && (n = state(s)) != want; ++i) std::this_thread::sleep_for(milliseconds(100));
    return n;
  };
  EXPECT_EQ(wait_state("acked", 1), 1);
  dev->disconnect();

  // rebooted on the new firmware (a second later: login and logout times are whole seconds, and online
  // means the last login is later than the last logout)
  std::this_thread::sleep_for(milliseconds(1100));
  dev = connect_v2(v2_creds(kPid, "E2EDEV01", kSecret, 0, 2));
  ASSERT_TRUE(report(*dev, "2.0"));
  EXPECT_EQ(wait_state("succeeded", 1), 1);
  EXPECT_EQ(alice.get(base + "tasks/" + task).str("upgrade_count"), "1");
  // the same result reported over HTTP does not count twice
  auto again = alice.post(base + "report/E2EDEV01", R"({"type":"1","identify":"0","last_version":"1.0","current_version":"2.0","result":"0"})");
  EXPECT_EQ(again.status, 409) << again.body;
  EXPECT_EQ(alice.get(base + "tasks/" + task).str("upgrade_count"), "1");
  auto logs = alice.post("/v2/upgrade/ota-logs", R"({"query":{"task_id":{"$eq":")" + task + R"("}}})");
  EXPECT_EQ(logs["count"].GetInt(), 2);  // sent at the ack, done at success
  auto devices = alice.get("/v2/products/" + kPid + "/devices");
  ASSERT_EQ(devices.status, 200);
  EXPECT_EQ(std::string(devices["list"][0]["versions"]["default"].GetString()), "2.0");
  EXPECT_TRUE(devices["list"][0]["online"].GetBool());

  // disabled over HTTP: the broker disconnects the device
  ASSERT_EQ(alice.put("/v2/products/" + kPid + "/devices/E2EDEV01/enabled", R"({"enabled":false})").status, 200);
  EXPECT_TRUE(dev->wait_disconnected(seconds(3)));
}

}  // namespace
}  // namespace iotgate::test
