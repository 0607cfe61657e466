// CLI changes reach a running broker within a second: disable / delete kicks and refuses, new entries log in.
#include "stack.h"

namespace iotgate::test {
namespace {

using std::chrono::milliseconds;

class AdminTest : public StackTest {
 protected:
  void seed() override {
    add_lierda_product(kPid, 1);
    add_lierda_device(kPid, kEui, kSecret);
    add_lierda_device(kPid, "SECONDDEV1", kSecret);
    cli({"account", "add", "app", "--password", "app-pw", "--allow", "read /sys/#"});
    cli({"product", "add", "krt", "--product-id", "KP1", "--product-secret", "product-secret-1"});
    cli({"device", "add", "krt", "--product-id", "KP1", "--device-id", "KD1", "--secret", "kd1-secret"});
  }
  // Seconds from `since` until `c` was disconnected by the broker.
  milliseconds kicked_within(MqttClient& c, std::chrono::steady_clock::time_point since) {
    EXPECT_TRUE(c.wait_disconnected(std::chrono::seconds(3)));
    return std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - since);
  }
};

TEST_F(AdminTest, DisablingADeviceKicksItAtOnceAndRefusesItUntilEnabled) {
  V2Creds c = v2_creds(kPid, kEui, kSecret, 0, 1);
  auto dev = connect_v2(c);
  auto other = connect_v2(v2_creds(kPid, "SECONDDEV1", kSecret, 0, 1));
  auto t0 = std::chrono::steady_clock::now();
  cli({"device", "disable", kPid, kEui});
  EXPECT_LT(kicked_within(*dev, t0), milliseconds(1000));
  EXPECT_TRUE(log_has("disconnecting 'V2_AA30C505.20MQTTJ000121_0_1': device disabled"));
  connect_v2(c, 135);
  EXPECT_TRUE(other->connected());  // the rest of the product is untouched
  cli({"device", "enable", kPid, kEui});
  EXPECT_LT(login_eventually(c.client_id, c.username, c.password, 0, milliseconds(1500)), milliseconds(1000));
}

TEST_F(AdminTest, DeletingADeviceKicksItAndItCannotLogInAgain) {
  V2Creds c = v2_creds(kPid, kEui, kSecret, 0, 1);
  auto dev = connect_v2(c);
  auto t0 = std::chrono::steady_clock::now();
  cli({"device", "delete", kPid, kEui});
  EXPECT_LT(kicked_within(*dev, t0), milliseconds(1000));
  connect_v2(c, 135);
  EXPECT_TRUE(log_has("unknown device 20MQTTJ000121"));
}

TEST_F(AdminTest, DisablingOrDeletingAProductKicksAllItsDevices) {
  auto a = connect_v2(v2_creds(kPid, kEui, kSecret, 0, 1));
  auto b = connect_v2(v2_creds(kPid, "SECONDDEV1", kSecret, 0, 1));
  auto krt = connect("KP1.KD1", "KD1", "kd1-secret");
  auto t0 = std::chrono::steady_clock::now();
  cli({"product", "disable", kPid});
  EXPECT_LT(kicked_within(*a, t0), milliseconds(1000));
  EXPECT_LT(kicked_within(*b, t0), milliseconds(1000));
  EXPECT_TRUE(krt->connected());
  cli({"product", "delete", "KP1"});
  EXPECT_LT(kicked_within(*krt, t0), milliseconds(2000));
  connect("KP1.KD1", "KD1", "kd1-secret", 135);
}

TEST_F(AdminTest, DeletingAnAccountKicksItsSessions) {
  auto app = connect("app:1", "app", "app-pw");
  auto t0 = std::chrono::steady_clock::now();
  cli({"account", "delete", "app"});
  EXPECT_LT(kicked_within(*app, t0), milliseconds(1000));
  connect("app:1", "app", "app-pw", 135);
}

TEST_F(AdminTest, NewDevicesAndAccountsCanLogInWithinASecond) {
  std::string secret = add_lierda_device(kPid, "NEWDEVICE9");
  V2Creds c = v2_creds(kPid, "NEWDEVICE9", secret, 0, 1);
  EXPECT_LT(login_eventually(c.client_id, c.username, c.password, 0, milliseconds(1500)), milliseconds(1000));
  cli({"account", "add", "late", "--password", "late-pw", "--superuser"});
  EXPECT_LT(login_eventually("late:1", "late", "late-pw", 0, milliseconds(1500)), milliseconds(1000));
  cli({"product", "add", "lierda", "--openid", "11111111", "--product-id", "BB000000", "--product-key", kKey,
       "--auth-type", "1"});
  std::string s2 = add_lierda_device("BB000000", "BRANDNEW01");
  V2Creds c2 = v2_creds("BB000000", "BRANDNEW01", s2, 0, 1, "11111111");
  EXPECT_LT(login_eventually(c2.client_id, c2.username, c2.password, 0, milliseconds(1500)), milliseconds(1000));
}

}  // namespace
}  // namespace iotgate::test
