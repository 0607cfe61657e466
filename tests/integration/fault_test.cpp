// Faults: floods of failed logins and malformed frames, broker restarts with devices connected. In each the
// broker stays up, legitimate traffic continues, nothing stored is lost, and the log does not flood.
#include "stack.h"

namespace iotgate::test {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

class FaultTest : public StackTest {
 protected:
  void seed() override {
    add_lierda_product(kPid, 1);
    add_lierda_device(kPid, kEui, kSecret);
    add_lierda_device(kPid, "SECONDDEV1", kSecret);
    cli({"account", "add", "app", "--password", "app-pw", "--allow", "read /sys/#"});
  }
  const std::string P = "/sys/" + kOpenid + "/" + kPid + "/" + kEui + "/";
};

TEST_F(FaultTest, ThousandFailedLoginsFromOneAddressAreBannedAndOthersUnaffected) {
  V2Creds good = v2_creds(kPid, kEui, kSecret, 0, 1);
  size_t from = broker->log_size();
  int refused = 0;
  for (int i = 0; i < 1000; ++i) {
    MqttClient attacker("attacker-" + std::to_string(i % 10));
    attacker.set_bind_address("127.0.0.2");
    if (attacker.connect(broker->port(), good.username, "guess-" + std::to_string(i), milliseconds(2000)) == 135) refused++;
    if (i == 500) {  // meanwhile a legitimate device elsewhere logs in and works
      auto dev = connect_v2(good);
      EXPECT_EQ(dev->publish(P + "uplink", "still-here", 1), 0);
    }
  }
  EXPECT_EQ(refused, 1000);
  EXPECT_TRUE(broker->wait_for_log("banning address 127.0.0.2", seconds(1), from));
  // Banned: guesses from that address are refused unchecked; the device's valid password still gets in (behind a
  // load balancer every client has that address, issue 18), and 127.0.0.1 is fine.
  MqttClient guess(good.client_id);
  guess.set_bind_address("127.0.0.2");
  EXPECT_EQ(guess.connect(broker->port(), good.username, "one-more-guess"), 135);
  EXPECT_TRUE(broker->wait_for_log("address banned until", seconds(2), from));
  MqttClient banned(good.client_id);
  banned.set_bind_address("127.0.0.2");
  EXPECT_EQ(banned.connect(broker->port(), good.username, good.password), 0);
  auto dev = connect_v2(v2_creds(kPid, kEui, kSecret, 0, 2));
  EXPECT_TRUE(dev->connected());
  // The log is not flooded: refusals are rate limited per reason (20 per 10 s by default).
  size_t lines = broker->count_log("login refused", from);
  EXPECT_LT(lines, 100u) << lines << " refusal lines for 1000 failed logins";
  EXPECT_GE(lines, 20u);
  EXPECT_TRUE(broker->running());
}

TEST_F(FaultTest, BurstOfMalformedAndOversizedFramesFromADevice) {
  auto app = connect("app:1", "app", "app-pw");
  ASSERT_LT(app->subscribe("/sys/#", 1), 128);
  auto dev = connect_v2(v2_creds(kPid, kEui, kSecret, 0, 1));
  size_t from = broker->log_size();
  for (int i = 0; i < 1000; ++i) {
    std::string bad = i % 3 == 0 ? "{\"HeaderCtrl\":8,\"Payload\":{\"SoftVer\":[" + std::to_string(i) + "]}}"
                      : i % 3 == 1 ? std::string(1 + i % 50, '\xff')
                                   : "{\"HeaderCtrl\":" + std::to_string(i) + "}";
    dev->publish(P + "firmware_report", bad, 0);
  }
  for (int i = 0; i < 20; ++i) dev->publish(P + "firmware_report", std::string(200000, 'A'), 0);
  // Legitimate traffic continues, from this device and others.
  EXPECT_EQ(dev->publish(P + "uplink", "after-the-burst", 1), 0);
  auto m = app->wait_message(P + "uplink", seconds(5));
  ASSERT_TRUE(m);
  EXPECT_EQ(m->payload, "after-the-burst");
  auto other = connect_v2(v2_creds(kPid, "SECONDDEV1", kSecret, 0, 1));
  EXPECT_TRUE(other->connected());
  EXPECT_TRUE(broker->running());
  EXPECT_TRUE(dev->connected());
  // Nothing was stored from the garbage, and the log holds a bounded number of refusal lines.
  EXPECT_EQ(redis.cli({"EXISTS", "iotgate:ota:version:" + kPid + ":" + kEui}), "0");
  size_t lines = broker->count_log("refused: |dropped ", from);
  EXPECT_GE(lines, 1u);
  EXPECT_LT(lines, 100u) << lines << " log lines for 1020 bad frames";
}

TEST_F(FaultTest, BrokerRestartWithDevicesConnected) {
  std::vector<std::unique_ptr<MqttClient>> devices;
  for (int i = 0; i < 20; ++i) devices.push_back(connect_v2(v2_creds(kPid, i % 2 ? kEui : "SECONDDEV1", kSecret, 0, i)));
  size_t from = broker->log_size();
  broker->restart();
  ASSERT_TRUE(broker->wait_for_log("iotgate: loaded 1 products, 2 devices, 1 accounts", seconds(10), from));
  for (auto& d : devices) EXPECT_TRUE(d->wait_disconnected(seconds(3)));
  auto app = connect("app:1", "app", "app-pw");
  ASSERT_LT(app->subscribe("/sys/#", 1), 128);
  for (int i = 0; i < 20; ++i) {
    auto d = connect_v2(v2_creds(kPid, i % 2 ? kEui : "SECONDDEV1", kSecret, 0, 100 + i));
    ASSERT_TRUE(d->connected());
    EXPECT_EQ(d->publish("/sys/" + kOpenid + "/" + kPid + "/" + (i % 2 ? kEui : "SECONDDEV1") + "/uplink", "x", 1), 0);
  }
  int received = 0;
  while (received < 20 && app->wait_message("/sys/+/+/+/uplink", seconds(2))) received++;
  EXPECT_EQ(received, 20);
  EXPECT_EQ(redis.cli({"SCARD", "iotgate:devices:" + kPid}), "2");
}

}  // namespace
}  // namespace iotgate::test
