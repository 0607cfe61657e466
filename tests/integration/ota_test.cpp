// OTA delivery end to end: tasks made with the CLI, devices on a real broker, progress and logs in Redis.
#include <rapidjson/document.h>

#include "stack.h"

namespace iotgate::test {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

const std::string kMd5 = "0123456789abcdef0123456789abcdef";

class OtaFlowTest : public StackTest {
 protected:
  void seed() override {
    add_lierda_product(kPid, 1);
    for (const char* eui : {"OTADEV001", "OTADEV002", "OTADEV003"}) add_lierda_device(kPid, eui, kSecret);
    cli({"product", "add", "krt", "--product-id", "KP1", "--product-secret", "product-secret-1"});
    cli({"device", "add", "krt", "--product-id", "KP1", "--device-id", "KD1", "--secret", "kd1-secret-1"});
    cli({"product", "add", "emu", "--product-key", "PK1"});
    cli({"device", "add", "emu", "--product-key", "PK1", "--device", "gw1", "--secret", "gw1-secret-1"});
  }
  // Creates a task and brings it to running: production tasks through submit + review, test tasks by start.
  std::string running_task(std::vector<std::string> extra, const std::string& product = kPid) {
    std::vector<std::string> args = {"task", "create", "--product-id", product, "--name", "fw-2.0", "--type", "wifi",
                                     "--from-version", "1.0", "--target-version", "2.0", "--target-url",
                                     "http://fw.example/2.0.bin", "--target-md5", kMd5, "--target-size", "4096"};
    args.insert(args.end(), extra.begin(), extra.end());
    std::string task = json_string(cli(args), "id");
    EXPECT_FALSE(task.empty());
    bool test_task = std::find(extra.begin(), extra.end(), "--tag-type") != extra.end();
    if (test_task) {
      cli({"task", "start", task});
    } else {
      cli({"--operator", "alice", "task", "submit", task, "--reviewer", "bob"});
      cli({"--operator", "bob", "task", "review", task, "--approve"});
    }
    std::this_thread::sleep_for(milliseconds(700));  // the task reaches the broker
    return task;
  }
  std::string prefix(const std::string& eui) { return "/sys/" + kOpenid + "/" + kPid + "/" + eui + "/"; }
  std::unique_ptr<MqttClient> device(const std::string& eui, int64_t ts) {
    return connect_v2(v2_creds(kPid, eui, kSecret, 0, ts));
  }
  void report(MqttClient& dev, const std::string& eui, const std::string& version, const std::string& module = "") {
    std::string payload = R"({"MessageId":7,"HeaderCtrl":8,"Payload":{"HardVer":"h1","SoftVer":")" + version + "\"" +
                          (module.empty() ? "" : R"(,"Module":")" + module + "\"") + R"(,"Type":2},"Version":"2.0"})";
    EXPECT_EQ(dev.publish(prefix(eui) + "firmware_report", payload, 1), 0);
    auto ack = dev.wait_message(prefix(eui) + "firmware_report_ack", seconds(3));
    ASSERT_TRUE(ack) << "no firmware_report_ack";
    EXPECT_NE(ack->payload.find(R"("Code":"200")"), std::string::npos);
  }
  std::optional<rapidjson::Document> notify(MqttClient& dev, const std::string& eui, milliseconds wait = seconds(3)) {
    auto m = dev.wait_message(prefix(eui) + "ota_notify", wait);
    if (!m) return std::nullopt;
    return parse(m->payload);
  }
  void ack(MqttClient& dev, const std::string& eui, const rapidjson::Document& notification, int qos = 1) {
    std::string down_id = notification["Payload"]["DownID"].GetString();
    EXPECT_EQ(dev.publish(prefix(eui) + "ota_notify_ack",
                          R"({"MessageId":8,"HeaderCtrl":9,"Payload":{"DownID":")" + down_id + R"("},"Version":"2.0"})",
                          qos),
              0);
  }
  int count(const std::string& task, const char* state) {
    auto d = parse(cli({"task", "show", task}));
    if (!d.IsObject() || !d.HasMember("devices_by_state")) return -1;
    return d["devices_by_state"][state].GetInt();
  }
  int wait_count(const std::string& task, const char* state, int want, milliseconds within = seconds(3)) {
    auto deadline = std::chrono::steady_clock::now() + within;
    int n = -1;
    while ((n = count(task, state)) != want && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(milliseconds(100));
    return n;
  }
};

TEST_F(OtaFlowTest, LierdaReportNotifyAckNewVersionSuccess) {
  std::string task = running_task({});
  {
    auto dev = device("OTADEV001", 1);
    report(*dev, "OTADEV001", "1.0");
    auto n = notify(*dev, "OTADEV001");
    ASSERT_TRUE(n) << broker->log();
    auto& p = (*n)["Payload"];
    EXPECT_EQ((*n)["HeaderCtrl"].GetInt(), 9);
    EXPECT_EQ(p["Type"].GetInt(), 2);
    EXPECT_STREQ(p["Url"].GetString(), "http://fw.example/2.0.bin");
    EXPECT_STREQ(p["SoftVer"].GetString(), "2.0");
    EXPECT_EQ(p["SoftSize"].GetInt(), 4096);
    EXPECT_STREQ(p["MD5"].GetString(), kMd5.c_str());
    EXPECT_STREQ(p["firmwareName"].GetString(), "fw-2.0");
    EXPECT_EQ(wait_count(task, "notified", 1), 1);
    ack(*dev, "OTADEV001", *n, 2);
    EXPECT_EQ(wait_count(task, "acked", 1), 1);
    dev->disconnect();
  }
  EXPECT_EQ(redis.cli({"HGET", "iotgate:ota:version:" + kPid + ":OTADEV001", "default"}), "1.0");
  auto dev = device("OTADEV001", 2);  // rebooted on the new firmware
  report(*dev, "OTADEV001", "2.0");
  EXPECT_EQ(wait_count(task, "succeeded", 1), 1);
  EXPECT_EQ(count(task, "acked"), 0);
  EXPECT_EQ(json_string(cli({"task", "get", task}), "upgrade_count"), "1");
  report(*dev, "OTADEV001", "2.0");  // a duplicate report does not count twice
  std::this_thread::sleep_for(milliseconds(300));
  EXPECT_EQ(json_string(cli({"task", "get", task}), "upgrade_count"), "1");
  // OTA logs: one "sent" (1) at the ack, one "done" (2) at success.
  auto logs = parse(cli({"task", "log", "query", "--query", R"({"task_id":{"$eq":")" + task + R"("}})"}));
  ASSERT_TRUE(logs.IsObject());
  EXPECT_EQ(logs["count"].GetInt(), 2);
  EXPECT_EQ(redis.cli({"HGET", "iotgate:ota:version:" + kPid + ":OTADEV001", "default"}), "2.0");
}

// A device's periodic reports of an unchanged version are acked but stored once per connection.
// iotgate answers the platform's topics in the broker's WRITE check, which mosquitto also runs for wills. A will is
// no PUBLISH of a live session: it is delivered like any message its sender may publish, and never answered. Here
// the will of a connection replaced by a second one with the same client id, which mosquitto checks with the old
// connection while the new one already holds the session (an answer would reach the new connection).
TEST_F(OtaFlowTest, AWillOnTheReportTopicIsDeliveredButNotAnswered) {
  const std::string eui = "OTADEV003";
  auto obs = observer(prefix(eui) + "#");
  const V2Creds creds = v2_creds(kPid, eui, kSecret, 0, 1);
  const std::string will =
      R"({"MessageId":41,"HeaderCtrl":8,"Payload":{"HardVer":"h1","SoftVer":"1.0","Type":2},"Version":"2.0"})";
  MqttClient replaced(creds.client_id);
  replaced.set_will(prefix(eui) + "firmware_report", will, 1);
  ASSERT_EQ(replaced.connect(broker->port(), creds.username, creds.password), 0);
  MqttClient live(creds.client_id);
  ASSERT_EQ(live.connect(broker->port(), creds.username, creds.password), 0);
  auto delivered = obs->wait_message(prefix(eui) + "firmware_report", seconds(3));
  ASSERT_TRUE(delivered) << "the will was not delivered";
  EXPECT_EQ(delivered->payload, will);
  EXPECT_FALSE(live.wait_message(prefix(eui) + "firmware_report_ack", milliseconds(800))) << "a will was answered";
  report(live, eui, "1.0");  // the live connection's own report is answered
}

TEST_F(OtaFlowTest, RepeatedReportsAreStoredOncePerConnection) {
  const std::string version_key = "iotgate:ota:version:" + kPid + ":OTADEV003";
  auto stored = [&] { return redis.cli({"HGET", version_key, "default"}); };
  auto wait_stored = [&](const std::string& v) {
    for (int i = 0; i < 50 && stored() != v; ++i) std::this_thread::sleep_for(milliseconds(50));
    return stored();
  };
  {
    auto dev = device("OTADEV003", 1);
    report(*dev, "OTADEV003", "0.7");
    ASSERT_EQ(wait_stored("0.7"), "0.7");
    redis.cli({"HSET", version_key, "default", "marker"});  // any new write would overwrite it
    report(*dev, "OTADEV003", "0.7");  // acked (report() checks), not stored
    std::this_thread::sleep_for(milliseconds(400));
    EXPECT_EQ(stored(), "marker");
    dev->disconnect();
  }
  auto dev = device("OTADEV003", 2);  // a new connection stores its first report again
  report(*dev, "OTADEV003", "0.7");
  EXPECT_EQ(wait_stored("0.7"), "0.7");
}

TEST_F(OtaFlowTest, FailurePathAndDevicesOutsideTheTask) {
  std::string task = running_task({});
  {
    auto dev = device("OTADEV002", 1);
    report(*dev, "OTADEV002", "1.0");
    auto n = notify(*dev, "OTADEV002");
    ASSERT_TRUE(n);
    ack(*dev, "OTADEV002", *n);
    EXPECT_EQ(wait_count(task, "acked", 1), 1);
    dev->disconnect();
  }
  auto dev = device("OTADEV002", 2);
  report(*dev, "OTADEV002", "1.0");  // the install failed: back on the old version
  EXPECT_EQ(wait_count(task, "failed", 1), 1);
  EXPECT_EQ(json_string(cli({"task", "get", task}), "upgrade_count"), "0");
  // A device on another version, or another module, is never notified.
  auto other = device("OTADEV003", 1);
  report(*other, "OTADEV003", "0.5");
  report(*other, "OTADEV003", "1.0", "mcu2");
  EXPECT_FALSE(notify(*other, "OTADEV003", milliseconds(600)));
}

TEST_F(OtaFlowTest, TestTaskReachesOnlyItsDevicesAndStoppedTasksNobody) {
  std::string task = running_task({"--tag-type", "1", "--devices", "OTADEV001"});
  auto outsider = device("OTADEV002", 1);
  report(*outsider, "OTADEV002", "1.0");
  EXPECT_FALSE(notify(*outsider, "OTADEV002", milliseconds(600)));
  auto listed = device("OTADEV001", 1);
  report(*listed, "OTADEV001", "1.0");
  EXPECT_TRUE(notify(*listed, "OTADEV001"));
  cli({"task", "stop", task});
  std::this_thread::sleep_for(milliseconds(700));
  // Notified before the stop and never acked: reconnecting does not bring a new notification from a stopped task.
  listed->disconnect();
  listed = device("OTADEV001", 2);
  report(*listed, "OTADEV001", "1.0");
  EXPECT_FALSE(notify(*listed, "OTADEV001", milliseconds(600)));
  cli({"task", "devices", task, "--add", "OTADEV003"});
  std::this_thread::sleep_for(milliseconds(700));
  auto third = device("OTADEV003", 1);
  report(*third, "OTADEV003", "1.0");
  EXPECT_FALSE(notify(*third, "OTADEV003", milliseconds(600)));
  cli({"task", "delete", task});
  std::this_thread::sleep_for(milliseconds(700));
  report(*third, "OTADEV003", "1.0");
  EXPECT_FALSE(notify(*third, "OTADEV003", milliseconds(600)));
}

TEST_F(OtaFlowTest, ManualTaskNotifiesOnlyAfterAPush) {
  std::string task = running_task({"--task-type", "1"});
  auto dev = device("OTADEV001", 1);
  report(*dev, "OTADEV001", "1.0");
  EXPECT_FALSE(notify(*dev, "OTADEV001", milliseconds(600)));
  cli({"task", "push", task, "--devices", "OTADEV001"});
  // The online device is asked for its version (HeaderCtrl 13), reports, and is notified.
  auto ask = dev->wait_message(prefix("OTADEV001") + "ask_firmware", seconds(3));
  ASSERT_TRUE(ask) << broker->log();
  EXPECT_EQ(parse(ask->payload)["HeaderCtrl"].GetInt(), 13);
  report(*dev, "OTADEV001", "1.0");
  EXPECT_TRUE(notify(*dev, "OTADEV001"));
  auto not_pushed = device("OTADEV002", 1);
  report(*not_pushed, "OTADEV002", "1.0");
  EXPECT_FALSE(notify(*not_pushed, "OTADEV002", milliseconds(600)));
}

TEST_F(OtaFlowTest, AskFirmwareSendsHeaderCtrl13ToTheDeviceOnly) {
  auto dev = device("OTADEV001", 1);
  auto other = device("OTADEV002", 1);
  cli({"device", "ask-firmware", kPid, "OTADEV001"});
  auto ask = dev->wait_message(prefix("OTADEV001") + "ask_firmware", seconds(3));
  ASSERT_TRUE(ask) << broker->log();
  auto d = parse(ask->payload);
  EXPECT_EQ(d["HeaderCtrl"].GetInt(), 13);
  EXPECT_STREQ(d["Version"].GetString(), "2.0");
  EXPECT_FALSE(other->wait_message("#", milliseconds(300)));
}

TEST_F(OtaFlowTest, RateLimitHoldsBackTheRest) {
  running_task({"--rate-limit", "1"});
  int notified = 0;
  std::vector<std::unique_ptr<MqttClient>> devs;
  for (const char* eui : {"OTADEV001", "OTADEV002", "OTADEV003"}) {
    devs.push_back(device(eui, 1));
    report(*devs.back(), eui, "1.0");
    if (notify(*devs.back(), eui, milliseconds(500))) notified++;
  }
  EXPECT_EQ(notified, 1);
}

TEST_F(OtaFlowTest, UnackedNotificationTimesOut) {
  std::string task = running_task({"--ack-timeout", "1"});
  auto dev = device("OTADEV001", 1);
  report(*dev, "OTADEV001", "1.0");
  ASSERT_TRUE(notify(*dev, "OTADEV001"));
  EXPECT_EQ(wait_count(task, "timed_out", 1, seconds(5)), 1);
}

TEST_F(OtaFlowTest, NotifiedDeviceIsNotifiedAgainWhenItReconnects) {
  running_task({});
  {
    auto dev = device("OTADEV001", 1);
    report(*dev, "OTADEV001", "1.0");
    ASSERT_TRUE(notify(*dev, "OTADEV001"));
    report(*dev, "OTADEV001", "1.0");  // same session: no second notification
    EXPECT_FALSE(notify(*dev, "OTADEV001", milliseconds(500)));
    dev->disconnect();
  }
  auto dev = device("OTADEV001", 2);
  report(*dev, "OTADEV001", "1.0");
  EXPECT_TRUE(notify(*dev, "OTADEV001"));
}

TEST_F(OtaFlowTest, RestartInTheMiddleLosesNoProgress) {
  std::string task = running_task({});
  {
    auto dev = device("OTADEV001", 1);
    report(*dev, "OTADEV001", "1.0");
    auto n = notify(*dev, "OTADEV001");
    ASSERT_TRUE(n);
    ack(*dev, "OTADEV001", *n);
    EXPECT_EQ(wait_count(task, "acked", 1), 1);
  }
  size_t from = broker->log_size();
  broker->restart();
  ASSERT_TRUE(broker->wait_for_log("iotgate: loaded", seconds(10), from));
  redis.restart();  // back with its AOF: the plugin follows the stream on, or reloads when it cannot
  ASSERT_TRUE(broker->wait_for_log("iotgate: reloaded|following its changes from where they stopped", seconds(10), from));
  auto dev = device("OTADEV001", 3);
  report(*dev, "OTADEV001", "2.0");
  EXPECT_EQ(wait_count(task, "succeeded", 1), 1);
  EXPECT_EQ(json_string(cli({"task", "get", task}), "upgrade_count"), "1");
}

TEST_F(OtaFlowTest, MalformedOtaMessagesAreRefusedAndChangeNothing) {
  std::string task = running_task({});
  auto dev = device("OTADEV001", 1);
  for (std::string bad : {std::string("not json"), std::string(R"({"HeaderCtrl":8})"),
                          std::string(R"({"HeaderCtrl":8,"Payload":{"SoftVer":{"a":1}}})"),
                          std::string(R"({"HeaderCtrl":3,"Payload":{"SoftVer":"1.0"}})")})
    EXPECT_EQ(dev->publish(prefix("OTADEV001") + "firmware_report", bad, 1), 135) << bad;
  EXPECT_EQ(dev->publish(prefix("OTADEV001") + "firmware_report", std::string(100000, 'x'), 1), 135);
  EXPECT_EQ(dev->publish(prefix("OTADEV001") + "ota_notify_ack", R"({"HeaderCtrl":9,"Payload":{}})", 1), 135);
  EXPECT_TRUE(log_has("firmware_report from '.*' refused"));
  EXPECT_FALSE(notify(*dev, "OTADEV001", milliseconds(300)));
  EXPECT_EQ(count(task, "notified"), 0);
  EXPECT_EQ(redis.cli({"EXISTS", "iotgate:ota:version:" + kPid + ":OTADEV001"}), "0");
  EXPECT_TRUE(broker->running());
}

TEST_F(OtaFlowTest, KrtReportNotifyAckSuccess) {
  std::string task = running_task({}, "KP1");
  {
    auto dev = connect("KP1.KD1", "KD1", "kd1-secret-1");
    ASSERT_LT(dev->subscribe("/sys/KP1/KD1/thing/ota/set", 1), 128);
    EXPECT_EQ(dev->publish("/sys/KP1/KD1/thing/ota/post", R"({"CMD":10,"ID":"1","HW_VERSION":"1.0.0","FW_VERSION":"1.0",})", 1), 0);
    auto m = dev->wait_message("/sys/KP1/KD1/thing/ota/set", seconds(3));
    ASSERT_TRUE(m) << broker->log();
    auto d = parse(m->payload);
    EXPECT_EQ(d["CMD"].GetInt(), 11);
    EXPECT_STREQ(d["URL"].GetString(), "http://fw.example/2.0.bin");
    EXPECT_STREQ(d["FW_VERSION"].GetString(), "2.0");
    std::string id = d["ID"].GetString();
    EXPECT_EQ(dev->publish("/sys/KP1/KD1/thing/ota/post", R"({"CMD":11,"ID":")" + id + R"(","BACK":"OK"})", 1), 0);
    EXPECT_EQ(wait_count(task, "acked", 1), 1);
    dev->disconnect();
  }
  auto dev = connect("KP1.KD1", "KD1", "kd1-secret-1");
  EXPECT_EQ(dev->publish("/sys/KP1/KD1/thing/ota/post", R"({"CMD":10,"ID":"2","HW_VERSION":"1.0.0","FW_VERSION":"2.0"})", 1), 0);
  EXPECT_EQ(wait_count(task, "succeeded", 1), 1);
}

TEST_F(OtaFlowTest, EmuCommandsAndResults) {
  auto gw = connect("gw1", "gw1", "gw1-secret-1");
  ASSERT_LT(gw->subscribe("v1/wudun/PK1/gw1/ota/+/command", 1), 128);
  cli({"emu", "upgrade", "--product-key", "PK1", "--device", "gw1", "--sub-device-id", "2", "--url",
       "http://fw.example/emu.bin", "--md5", kMd5});
  auto cmd = gw->wait_message("v1/wudun/PK1/gw1/ota/emu_upgrade/command", seconds(3));
  ASSERT_TRUE(cmd) << broker->log();
  auto c = parse(cmd->payload);
  EXPECT_STREQ(c["device_uid"].GetString(), "gw1");
  EXPECT_STREQ(c["data"]["download_url"].GetString(), "http://fw.example/emu.bin");
  EXPECT_EQ(std::string(c["mid"].GetString()).size(), 36u);
  // The seed's own sample, trailing commas and all.
  EXPECT_EQ(gw->publish("v1/wudun/PK1/gw1/ota/emu_upgrade/result",
                        R"({"trace_id":"t","mid":"m","type":"emu_upgrade","device_uid":"gw1","sub_device_id":2,
                            "timestamp":1725615497191,"data":{"device_id":2,"download_status":1,},})", 1),
            0);
  EXPECT_EQ(gw->publish("v1/wudun/PK1/gw1/ota/emu_upgrade_result/result",
                        R"({"type":"emu_upgrade_result","sub_device_id":2,"data":{"device_id":2,"status":1,
                            "emu_upgrade_success":1,"emu_upgrade_device":3,"emu_upgrade_status":4,
                            "emu_upgrade_content":80,"emu_product_sn":"emu-v1.0.0"}})", 1),
            0);
  EXPECT_EQ(gw->publish("v1/wudun/PK1/gw1/ota/emu_version/result", R"({"data":[{"device_id":2,"status":9}]})", 1), 135);
  std::this_thread::sleep_for(milliseconds(300));
  auto shown = parse(cli({"emu", "show", "--product-key", "PK1", "--device", "gw1"}));
  ASSERT_TRUE(shown.IsObject()) << cli({"emu", "show", "--product-key", "PK1", "--device", "gw1"});
  std::string text = cli({"emu", "show", "--product-key", "PK1", "--device", "gw1"});
  EXPECT_NE(text.find(R"("download_status":1)"), std::string::npos) << text;
  EXPECT_NE(text.find(R"("emu_upgrade_status":4)"), std::string::npos) << text;
  EXPECT_NE(text.find(R"("emu_upgrade_content":80)"), std::string::npos) << text;
  EXPECT_EQ(text.find(R"("status":9)"), std::string::npos) << text;
}

}  // namespace
}  // namespace iotgate::test
