// The Prometheus page (plugin_opt_metrics_listen): scraped over HTTP from the store process while real devices log in,
// are refused, are denied topics, run an OTA task, and while Redis goes away.
#include <httplib.h>

#include <sstream>

#include "stack.h"

namespace iotgate::test {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

const std::string kMd5 = "0123456789abcdef0123456789abcdef";

class MetricsTest : public StackTest {
 protected:
  void seed() override {
    add_lierda_product(kPid, 1);
    add_lierda_device(kPid, "METDEV001", kSecret);
  }
  std::map<std::string, std::string> plugin_options() override {
    metrics_port = free_port();
    return {{"metrics_listen", "127.0.0.1:" + std::to_string(metrics_port)}, {"auth_fail_limit", "3"}};
  }

  // The page, or "" when it does not answer 200 with the Prometheus content type.
  std::string scrape() {
    httplib::Client http("127.0.0.1", metrics_port);
    http.set_connection_timeout(2);
    auto res = http.Get("/metrics");
    if (!res || res->status != 200) return "";
    EXPECT_EQ(res->get_header_value("Content-Type").rfind("text/plain; version=0.0.4", 0), 0u);
    return res->body;
  }
  // The value of sample `key` (name and labels as the page writes them); -1 when the page lacks it.
  static double value(const std::string& page, const std::string& key) {
    std::istringstream lines(page);
    std::string line;
    while (std::getline(lines, line))
      if (line.size() > key.size() && line.compare(0, key.size(), key) == 0 && line[key.size()] == ' ')
        return std::stod(line.substr(key.size() + 1));
    return -1;
  }
  // Scrapes until sample `key` has `want` (the broker hands its counters over once a second); returns the last value.
  double wait_value(const std::string& key, double want, milliseconds within = seconds(4)) {
    auto deadline = std::chrono::steady_clock::now() + within;
    double v = -1;
    while ((v = value(scrape(), key)) != want && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(milliseconds(100));
    return v;
  }
  std::string prefix() { return "/sys/" + kOpenid + "/" + kPid + "/METDEV001/"; }

  int metrics_port = 0;
};

TEST_F(MetricsTest, TheNumbersMoveWithRealTraffic) {
  std::string page = scrape();
  ASSERT_FALSE(page.empty()) << broker->log();
  EXPECT_TRUE(log_has("iotgate: metrics on http://127.0.0.1:" + std::to_string(metrics_port) + "/metrics"));
  // Every family is described, and the store process's own numbers are there from the start.
  for (const char* family : {"iotgate_logins_accepted_total", "iotgate_logins_refused_total", "iotgate_sessions",
                             "iotgate_acl_denials_total", "iotgate_bans_total", "iotgate_bans_active",
                             "iotgate_ota_events_total", "iotgate_loaded", "iotgate_redis_up",
                             "iotgate_store_queue_depth", "iotgate_loads_total", "iotgate_last_load_timestamp_seconds",
                             "iotgate_last_load_duration_seconds", "iotgate_last_load_records"})
    EXPECT_NE(page.find(std::string("# TYPE ") + family + " "), std::string::npos) << family;
  EXPECT_EQ(wait_value("iotgate_loaded", 1), 1);
  page = scrape();  // with the broker's samples (sent once a second), not only the store process's
  EXPECT_EQ(value(page, "iotgate_redis_up"), 1);
  EXPECT_EQ(value(page, "iotgate_loads_total"), 1);
  EXPECT_GE(value(page, "iotgate_last_load_records"), 2);  // the product and the device at least
  EXPECT_NEAR(value(page, "iotgate_last_load_timestamp_seconds"), static_cast<double>(unix_now()), 30);
  const std::string accepted = R"(iotgate_logins_accepted_total{protocol="lierda",kind="lierda-v2"})";
  const std::string sessions = R"(iotgate_sessions{kind="lierda-v2"})";
  const std::string wrong = R"(iotgate_logins_refused_total{protocol="lierda",reason="wrong-password"})";
  const std::string unknown = R"(iotgate_logins_refused_total{protocol="unknown",reason="unknown-login"})";
  const std::string denied = R"(iotgate_acl_denials_total{access="write"})";
  EXPECT_EQ(value(page, accepted), 0);
  EXPECT_EQ(value(page, sessions), 0);
  EXPECT_EQ(value(page, denied), 0);
  EXPECT_EQ(value(page, wrong), -1);  // no refusal of that kind yet

  // A task for the device, then its login, a topic it may not write, and its upgrade to success.
  std::string task = json_string(cli({"task", "create", "--product-id", kPid, "--name", "fw-2.0", "--type", "wifi",
                                      "--from-version", "1.0", "--target-version", "2.0", "--target-url",
                                      "http://fw.example/2.0.bin", "--target-md5", kMd5, "--target-size", "4096",
                                      "--tag-type", "1", "--devices", "METDEV001"}),
                                 "id");
  ASSERT_FALSE(task.empty());
  cli({"task", "start", task});
  std::this_thread::sleep_for(milliseconds(700));  // the task reaches the broker
  auto creds = v2_creds(kPid, "METDEV001", kSecret, 0, 1);
  auto dev = connect_v2(creds);
  EXPECT_EQ(wait_value(accepted, 1), 1);
  EXPECT_EQ(wait_value(sessions, 1), 1);
  // A write outside its own topics is denied (QoS 1: the PUBACK says not authorized, 135).
  EXPECT_EQ(dev->publish("/sys/" + kOpenid + "/" + kPid + "/OTHER0001/uplink", "x", 1), 135);
  EXPECT_EQ(wait_value(denied, 1), 1);
  const std::string report_head = R"({"MessageId":7,"HeaderCtrl":8,"Payload":{"HardVer":"h1","SoftVer":")";
  ASSERT_EQ(dev->publish(prefix() + "firmware_report", report_head + R"(1.0","Type":2},"Version":"2.0"})", 1), 0);
  auto notify = dev->wait_message(prefix() + "ota_notify", seconds(3));
  ASSERT_TRUE(notify) << broker->log();
  const std::string notified = R"(iotgate_ota_events_total{task=")" + task + R"(",event="notified"})";
  const std::string acked = R"(iotgate_ota_events_total{task=")" + task + R"(",event="acked"})";
  const std::string succeeded = R"(iotgate_ota_events_total{task=")" + task + R"(",event="succeeded"})";
  EXPECT_EQ(wait_value(notified, 1), 1);
  EXPECT_EQ(value(scrape(), succeeded), 0);
  std::string down_id = parse(notify->payload)["Payload"]["DownID"].GetString();
  ASSERT_EQ(dev->publish(prefix() + "ota_notify_ack",
                         R"({"MessageId":8,"HeaderCtrl":9,"Payload":{"DownID":")" + down_id + R"("},"Version":"2.0"})", 1),
            0);
  EXPECT_EQ(wait_value(acked, 1), 1);
  dev->disconnect();
  EXPECT_EQ(wait_value(sessions, 0), 0);
  dev = connect_v2(v2_creds(kPid, "METDEV001", kSecret, 0, 2));  // rebooted on the new firmware
  ASSERT_EQ(dev->publish(prefix() + "firmware_report", report_head + R"(2.0","Type":2},"Version":"2.0"})", 1), 0);
  EXPECT_EQ(wait_value(succeeded, 1), 1);
  EXPECT_EQ(wait_value(accepted, 2), 2);

  // Refusals: a wrong password (the Lierda module claimed the name), a name no module claims; then a ban.
  auto bad = creds;
  bad.client_id = "V2_" + kPid + ".METDEV001_0_3";
  bad.password = std::string(bad.password.size(), '0');
  connect(bad.client_id, bad.username, bad.password, 135);
  connect("stranger", std::string("nobody"), std::string("x"), 135);
  EXPECT_EQ(wait_value(wrong, 1), 1);
  EXPECT_EQ(wait_value(unknown, 1), 1);
  for (int i = 0; i < 3; ++i) connect(bad.client_id, bad.username, bad.password, 135);
  EXPECT_EQ(wait_value(R"(iotgate_bans_total{scope="username"})", 1), 1);
  EXPECT_EQ(wait_value("iotgate_bans_active", 1), 1);
  EXPECT_GE(wait_value(R"(iotgate_logins_refused_total{protocol="lierda",reason="address-banned"})", 1), 1);

  // Redis away: down, and the device's logout time waits in the store process's queue; back: up, queue empty.
  redis.kill();
  dev->disconnect();
  EXPECT_EQ(wait_value("iotgate_redis_up", 0, seconds(8)), 0);
  EXPECT_GE(wait_value("iotgate_store_queue_depth", 1, seconds(8)), 1);
  redis.start();
  EXPECT_EQ(wait_value("iotgate_redis_up", 1, seconds(10)), 1);
  EXPECT_EQ(wait_value("iotgate_store_queue_depth", 0, seconds(10)), 0);
}

// A port already taken: the broker runs on without the page and says why.
class MetricsPortTakenTest : public MetricsTest {
 protected:
  std::map<std::string, std::string> plugin_options() override {
    hold_a_port();
    return {{"metrics_listen", "127.0.0.1:" + std::to_string(metrics_port)}};
  }
  // Binds a port and keeps it for the test: metrics_port.
  void hold_a_port() { metrics_port = blocker.bind_to_any_port("127.0.0.1"); }
  httplib::Server blocker;
};

TEST_F(MetricsPortTakenTest, TheBrokerRunsOnAndTheLogSaysWhy) {
  EXPECT_TRUE(log_has("iotgate: cannot serve metrics on 127.0.0.1:" + std::to_string(metrics_port)));
  connect_v2(v2_creds(kPid, "METDEV001", kSecret, 0, 1));
}

}  // namespace
}  // namespace iotgate::test
