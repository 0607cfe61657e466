// The OTA router's state machine, with a fake broker.
#include <gtest/gtest.h>

#include <algorithm>

#include <rapidjson/document.h>

#include "iotgate/emu/emu.h"
#include "iotgate/gate.h"
#include "iotgate/krt/krt.h"
#include "iotgate/lierda/lierda.h"
#include "iotgate/ota/router.h"

using namespace iotgate;

namespace {

struct Sent {
  std::string client_id, topic, payload;
};
struct FakeEffects : Effects {
  std::vector<Sent> sent;
  std::vector<StoreJob> jobs;
  void publish_to_client(const std::string& c, const std::string& t, const std::string& p, int) override {
    sent.push_back({c, t, p});
  }
  void publish(const std::string& t, const std::string& p, int) override { sent.push_back({"", t, p}); }
  void clear_retained(const std::string& t) override { sent.push_back({"", t, ""}); }
  void kick(const std::string&) override {}
  void submit(StoreJob job) override { jobs.push_back(std::move(job)); }
};

Fields task_fields(std::map<std::string, std::string> over = {}) {
  Fields f = {{"product_id", "AA30C505"}, {"name", "fw2"}, {"type", "wifi"}, {"identify", "default"},
              {"from_version", "1.0"}, {"target_version", "2.0"}, {"target_version_url", "http://x/fw.bin"},
              {"target_version_md5", "0123456789abcdef0123456789abcdef"}, {"target_version_size", "1024"},
              {"status", "1"}, {"task_type", "0"}, {"scope_category", "0"}, {"tag_type", "0"}};
  for (auto& [k, v] : over) f[k] = v;
  return f;
}

class OtaTest : public ::testing::Test {
 protected:
  OtaTest() : log_([this](LogLevel, const std::string& s) { lines_.push_back(s); }, LogLevel::debug, 1000, 10),
              ota_(Config{}, log_, fx_, [this] { return now_; }) {
    product_.id = "AA30C505";
    product_.protocol = Protocol::lierda;
    product_.openid = "7ED01E2A";
    product_.product_key = "DB6FACEF35BEBA0517712F0E4BE32936";
    device_.product = "AA30C505";
    device_.id = "DEV00001";
    id_.kind = SessionKind::lierda_v2;
    id_.product = "AA30C505";
    id_.device = "DEV00001";
    id_.prefix = lierda_prefix("7ED01E2A", "AA30C505", "DEV00001");
  }
  bool report(const std::string& version, int64_t session_ms, const std::string& module = "") {
    std::string payload = R"({"MessageId":"m1","HeaderCtrl":8,"Payload":{"HardVer":"h1","SoftVer":")" + version + "\"" +
                          (module.empty() ? "" : R"(,"Module":")" + module + "\"") + R"(,"Type":2},"Version":"2.0"})";
    return lierda_.ota_message("c1", id_, product_, device_, "firmware_report", payload, session_ms);
  }
  bool ack(const std::string& down_id) {
    return lierda_.ota_message("c1", id_, product_, device_, "ota_notify_ack",
                          R"({"MessageId":2,"HeaderCtrl":9,"Payload":{"DownID":")" + down_id + R"("},"Version":"2.0"})",
                          1);
  }
  std::vector<Sent> notifies() {
    std::vector<Sent> out;
    for (const auto& s : fx_.sent)
      if (s.topic.size() > 10 && s.topic.substr(s.topic.size() - 10) == "ota_notify") out.push_back(s);
    return out;
  }
  const OtaProgress* progress() { return ota_.progress("T1", "DEV00001"); }

  int64_t now_ = 1700000000;
  std::vector<std::string> lines_;
  Log log_;
  FakeEffects fx_;
  OtaRouter ota_;
  // The protocol modules whose OTA wire formats drive the router.
  Config config_;
  Registry registry_;
  PendingReplies replies_;
  VerifiedPasswords passwords_;
  LoadChanges load_changes_;
  GateContext context_{config_, log_, fx_, [this] { return now_; }, registry_, ota_, replies_, passwords_, load_changes_};
  LierdaModule lierda_{context_};
  KrtModule krt_{context_};
  EmuModule emu_{context_};
  Product product_;
  Device device_;
  Identity id_;
};

}  // namespace

TEST_F(OtaTest, ReportIsAckedAndVersionStored) {
  ASSERT_TRUE(report("0.9", 1));
  ASSERT_EQ(fx_.sent.size(), 1u);
  EXPECT_EQ(fx_.sent[0].topic, id_.prefix + "firmware_report_ack");
  EXPECT_EQ(fx_.sent[0].payload, R"({"MessageId":"m1","HeaderCtrl":8,"Payload":{"Code":"200","Msg":"SUCCESS"},"Version":"2.0"})");
  ASSERT_EQ(fx_.jobs.size(), 1u);
  EXPECT_EQ(fx_.jobs[0].type, StoreJob::Type::ota_version);
  EXPECT_EQ(fx_.jobs[0].fields.at("default"), "0.9");
  EXPECT_EQ(fx_.jobs[0].fields.at("hw:default"), "h1");
}

// Devices report periodically: within one connection the same report is stored once, a changed one again.
TEST_F(OtaTest, RepeatedReportsOfOneConnectionAreStoredOnce) {
  std::string last_stored;
  auto send = [&](const std::string& version) {
    return lierda_.ota_message("c1", id_, product_, device_, "firmware_report",
                          R"({"MessageId":1,"HeaderCtrl":8,"Payload":{"SoftVer":")" + version + R"("},"Version":"2.0"})",
                          1, &last_stored);
  };
  auto version_writes = [&] {
    return std::count_if(fx_.jobs.begin(), fx_.jobs.end(),
                         [](const StoreJob& j) { return j.type == StoreJob::Type::ota_version; });
  };
  ASSERT_TRUE(send("0.9"));
  ASSERT_TRUE(send("0.9"));
  ASSERT_TRUE(send("0.9"));
  EXPECT_EQ(version_writes(), 1);
  ASSERT_TRUE(send("1.0"));
  EXPECT_EQ(version_writes(), 2);
  EXPECT_EQ(fx_.jobs.back().fields.at("default"), "1.0");
  last_stored.clear();  // a new connection
  ASSERT_TRUE(send("1.0"));
  EXPECT_EQ(version_writes(), 3);
  EXPECT_EQ(fx_.sent.size(), 5u);  // every report is still acked
}

TEST_F(OtaTest, FullFlowNotifyAckSuccess) {
  ota_.on_task("T1", task_fields());
  ASSERT_TRUE(report("1.0", 1));
  auto n = notifies();
  ASSERT_EQ(n.size(), 1u);
  rapidjson::Document d;
  d.Parse(n[0].payload.c_str());
  EXPECT_EQ(d["HeaderCtrl"].GetInt(), 9);
  EXPECT_EQ(d["Payload"]["Type"].GetInt(), 2);
  EXPECT_STREQ(d["Payload"]["Url"].GetString(), "http://x/fw.bin");
  EXPECT_STREQ(d["Payload"]["SoftVer"].GetString(), "2.0");
  EXPECT_EQ(d["Payload"]["SoftSize"].GetInt(), 1024);
  EXPECT_STREQ(d["Payload"]["firmwareName"].GetString(), "fw2");
  EXPECT_FALSE(d["Payload"].HasMember("Module"));
  std::string down_id = d["Payload"]["DownID"].GetString();
  ASSERT_TRUE(progress());
  EXPECT_EQ(progress()->state, OtaState::notified);
  ASSERT_TRUE(ack(down_id));
  EXPECT_EQ(progress()->state, OtaState::acked);
  EXPECT_EQ(fx_.jobs.back().fields.at("log_status"), "1");
  size_t jobs = fx_.jobs.size();
  ASSERT_TRUE(ack(down_id));  // retransmitted: no second log entry
  EXPECT_EQ(fx_.jobs.size(), jobs);
  ASSERT_TRUE(report("2.0", wall_ms()));
  EXPECT_EQ(progress()->state, OtaState::succeeded);
  EXPECT_EQ(fx_.jobs.back().fields.at("count_success"), "1");
  EXPECT_EQ(fx_.jobs.back().fields.at("log_status"), "2");
  ASSERT_TRUE(report("2.0", wall_ms()));  // a later report changes nothing
  EXPECT_EQ(progress()->state, OtaState::succeeded);
  EXPECT_EQ(notifies().size(), 1u);
}

TEST_F(OtaTest, FailureWhenTheNewSessionReportsAnotherVersion) {
  ota_.on_task("T1", task_fields());
  report("1.0", 1);
  rapidjson::Document d;
  d.Parse(notifies()[0].payload.c_str());
  ack(d["Payload"]["DownID"].GetString());
  report("1.0", 1);  // same session as the ack (periodic report): not decisive
  EXPECT_EQ(progress()->state, OtaState::acked);
  report("1.0", wall_ms() + 10);  // rebooted on the old version
  EXPECT_EQ(progress()->state, OtaState::failed);
  report("1.0", wall_ms() + 20);
  EXPECT_EQ(notifies().size(), 1u);  // a failed device is not retried automatically
}

TEST_F(OtaTest, NotifiedButUnackedIsNotifiedAgainOnlyAfterReconnecting) {
  ota_.on_task("T1", task_fields());
  report("1.0", 1);
  report("1.0", 1);  // retransmission in the same session
  EXPECT_EQ(notifies().size(), 1u);
  report("1.0", wall_ms() + 10);
  EXPECT_EQ(notifies().size(), 2u);
  EXPECT_EQ(progress()->state, OtaState::notified);
}

TEST_F(OtaTest, ScopeTestTasksManualGrayAndStatus) {
  ota_.on_task("T1", task_fields({{"scope_category", "1"}, {"device_list", R"(["OTHER"])"}}));
  report("1.0", 1);
  EXPECT_TRUE(notifies().empty());
  ota_.on_task("T1", task_fields({{"tag_type", "1"}, {"device_list", R"(["OTHER"])"}}));
  report("1.0", 1);
  EXPECT_TRUE(notifies().empty());
  ota_.on_task("T1", task_fields({{"status", "0"}}));
  report("1.0", 1);
  EXPECT_TRUE(notifies().empty());
  ota_.on_task("T1", task_fields({{"from_version", "0.5"}}));
  report("1.0", 1);
  EXPECT_TRUE(notifies().empty());
  ota_.on_task("T1", task_fields({{"identify", "mcu1"}}));
  report("1.0", 1);
  EXPECT_TRUE(notifies().empty());
  report("1.0", 1, "mcu1");
  ASSERT_EQ(notifies().size(), 1u);
  EXPECT_NE(notifies()[0].payload.find(R"("Module":"mcu1")"), std::string::npos);
  ota_.on_task("T1", std::nullopt);
  ota_.on_task("T2", task_fields({{"task_type", "1"}}));
  report("1.0", 1);
  EXPECT_EQ(notifies().size(), 1u);  // manual: waits for a push
  ota_.push("T2", {"DEV00001"});
  report("1.0", 1);
  EXPECT_EQ(notifies().size(), 2u);
  ota_.on_task("T3", task_fields({{"gray_percent", std::to_string(gray_bucket("DEV00002"))}, {"from_version", "3"}}));
  id_.device = device_.id = "DEV00002";
  report("3", 1);
  EXPECT_EQ(notifies().size(), 2u);  // outside the gray percentage
}

TEST_F(OtaTest, RateLimitPerTask) {
  ota_.on_task("T1", task_fields({{"rate_limit", "2"}}));
  for (int i = 0; i < 5; ++i) {
    id_.device = device_.id = "DEV0000" + std::to_string(i);
    id_.prefix = lierda_prefix("7ED01E2A", "AA30C505", id_.device);
    report("1.0", 1);
  }
  EXPECT_EQ(notifies().size(), 2u);
}

TEST_F(OtaTest, TimeoutsMoveDevicesToTimedOut) {
  ota_.on_task("T1", task_fields({{"ack_timeout", "30"}, {"upgrade_timeout", "100"}}));
  report("1.0", 1);
  now_ += 31;
  ota_.sweep_timeouts();
  EXPECT_EQ(progress()->state, OtaState::timed_out);
}

TEST_F(OtaTest, MalformedReportsChangeNothing) {
  ota_.on_task("T1", task_fields());
  // NaN cannot be echoed back as JSON (found by fuzz_messages): the frame is refused, not answered with broken JSON.
  for (const char* bad : {"nope", "[]", R"({"HeaderCtrl":9,"Payload":{"SoftVer":"1.0"}})", R"({"HeaderCtrl":8})",
                          R"({"MessageId":NaN,"HeaderCtrl":8,"Payload":{"SoftVer":"v1.0"},"Version":"2.0"})",
                          R"({"HeaderCtrl":8,"Payload":{"SoftVer":{"x":1}}})", R"({"HeaderCtrl":8,"Payload":"zz"})"})
    EXPECT_FALSE(lierda_.ota_message("c1", id_, product_, device_, "firmware_report", bad, 1)) << bad;
  for (const auto& j : fx_.jobs) EXPECT_NE(j.type, StoreJob::Type::ota_progress);
  EXPECT_TRUE(notifies().empty());
  for (const auto& sent : fx_.sent) {  // only the 4001 ack of the malformed SoftVer, as valid JSON
    rapidjson::Document d;
    d.Parse(sent.payload.c_str());
    EXPECT_FALSE(d.HasParseError()) << sent.payload;
    EXPECT_NE(sent.payload.find("4001"), std::string::npos) << sent.payload;
  }
  // Trailing commas (as in the seeds' samples) are accepted.
  EXPECT_TRUE(lierda_.ota_message("c1", id_, product_, device_, "firmware_report",
                             R"({"MessageId":1,"HeaderCtrl":8,"Payload":{"SoftVer":"1.0",},"Version":"2.0",})", 1));
  EXPECT_EQ(notifies().size(), 1u);
}

TEST_F(OtaTest, EncryptedProductsDecryptReportsAndEncryptReplies) {
  product_.encrypted = true;
  device_.session = std::make_shared<const SessionKey>(SessionKey{"", 0, "A9AB8E82D2D4A60E67C99D3A446D6088", 0});
  ota_.on_task("T1", task_fields());
  Bytes key = *from_hex(device_.session_key());
  std::string body = to_hex_upper(aes128_ecb_encrypt(key, R"({"SoftVer":"1.0","Type":2})"));
  ASSERT_TRUE(lierda_.ota_message("c1", id_, product_, device_, "firmware_report",
                             R"({"MessageId":1,"HeaderCtrl":8,"Payload":")" + body + R"(","Version":"2.0"})", 1));
  auto n = notifies();
  ASSERT_EQ(n.size(), 1u);
  rapidjson::Document d;
  d.Parse(n[0].payload.c_str());
  ASSERT_TRUE(d["Payload"].IsString());
  auto plain = aes128_ecb_decrypt(key, *from_hex(d["Payload"].GetString()));
  ASSERT_TRUE(plain);
  EXPECT_NE(plain->find(R"("SoftVer":"2.0")"), std::string::npos);
}

TEST_F(OtaTest, KrtFlow) {
  Identity k;
  k.kind = SessionKind::krt_device;
  k.product = "AA30C505";
  k.device = "KD1";
  k.prefix = krt_prefix("AA30C505", "KD1");
  ota_.on_task("T1", task_fields());
  ASSERT_TRUE(krt_.ota_message("kc", k, R"({"CMD":10,"ID":"1","HW_VERSION":"1.0.0","FW_VERSION":"1.0",})", 1));
  ASSERT_EQ(fx_.sent.size(), 1u);
  EXPECT_EQ(fx_.sent[0].topic, "/sys/AA30C505/KD1/thing/ota/set");
  rapidjson::Document d;
  d.Parse(fx_.sent[0].payload.c_str());
  EXPECT_EQ(d["CMD"].GetInt(), 11);
  EXPECT_STREQ(d["FW_VERSION"].GetString(), "2.0");
  EXPECT_STREQ(d["URL"].GetString(), "http://x/fw.bin");
  std::string down = d["ID"].GetString();
  ASSERT_TRUE(krt_.ota_message("kc", k, R"({"CMD":11,"ID":")" + down + R"(","BACK":"OK"})", 1));
  EXPECT_EQ(ota_.progress("T1", "KD1")->state, OtaState::acked);
  ASSERT_TRUE(krt_.ota_message("kc", k, R"({"CMD":10,"ID":"2","FW_VERSION":"2.0"})", wall_ms()));
  EXPECT_EQ(ota_.progress("T1", "KD1")->state, OtaState::succeeded);
  EXPECT_FALSE(krt_.ota_message("kc", k, R"({"CMD":12})", 1));
  EXPECT_FALSE(krt_.ota_message("kc", k, R"({"CMD":11,"ID":"x","BACK":"NO"})", 1));
}

TEST_F(OtaTest, EmuResultsAreValidatedAndStored) {
  Identity e;
  e.kind = SessionKind::emu_gateway;
  e.product = "PK1";
  e.device = "gw1";
  e.prefix = emu_prefix("wudun", "PK1", "gw1");
  std::string version = R"({"trace_id":"t","mid":"m","type":"emu_version","device_uid":"gw1","sub_device_id":2,
    "timestamp":1725615497191,"data":[{"device_id":2,"status":1,"emu_upgrade_success":1,"emu_upgrade_device":3,
    "emu_upgrade_status":5,"emu_upgrade_content":100,"emu_product_sn":"emu-v1.0.0"},{"device_id":4,"status":2,
    "emu_upgrade_success":null,"emu_upgrade_device":null,"emu_upgrade_status":null,"emu_upgrade_content":null,
    "emu_product_sn":""},]})";
  ASSERT_TRUE(emu_.ota_result("gw1", e, "emu_version", version));
  ASSERT_EQ(fx_.jobs.size(), 1u);
  EXPECT_EQ(fx_.jobs[0].type, StoreJob::Type::emu_result);
  EXPECT_NE(fx_.jobs[0].fields.at("2").find(R"("emu_upgrade_status":5)"), std::string::npos);
  EXPECT_NE(fx_.jobs[0].fields.at("4").find(R"("emu_upgrade_success":null)"), std::string::npos);
  EXPECT_TRUE(emu_.ota_result("gw1", e, "emu_upgrade", R"({"sub_device_id":2,"data":{"device_id":2,"download_status":1,},})"));
  EXPECT_FALSE(emu_.ota_result("gw1", e, "emu_upgrade", R"({"data":{"device_id":2,"download_status":7}})"));
  EXPECT_FALSE(emu_.ota_result("gw1", e, "emu_version", R"({"data":[{"device_id":"x"}]})"));
  EXPECT_FALSE(emu_.ota_result("gw1", e, "emu_version", R"({"data":[{"device_id":1,"status":"high"}]})"));
  EXPECT_FALSE(emu_.ota_result("gw1", e, "emu_other", R"({"data":{"device_id":1}})"));
  EXPECT_EQ(fx_.jobs.size(), 2u);
}
