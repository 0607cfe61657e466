// A real redis-server and a real mosquitto with the iotgate plugin, on free loopback ports, plus helpers that
// drive the admin CLI and compute device credentials.
#pragma once
#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include <memory>
#include <thread>

#include "harness.h"
#include "iotgate/crypto.h"
#include "iotgate/lierda/lierda.h"

namespace iotgate::test {

// The seed's Lierda identities (protocol.md 1.2).
inline const std::string kOpenid = "7ED01E2A";
inline const std::string kPid = "AA30C505";
inline const std::string kEui = "20MQTTJ000121";
inline const std::string kKey = "DB6FACEF35BEBA0517712F0E4BE32936";
inline const std::string kSecret = "326086233FAB8A96566796551EB1DFF8";

// A message's payload as a JSON document (HasParseError() when it is none).
inline rapidjson::Document parse(const std::string& s) {
  rapidjson::Document d;
  d.Parse(s.c_str());
  return d;
}

inline int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

struct V2Creds {
  std::string client_id, username, password;
};
inline V2Creds v2_creds(const std::string& pid, const std::string& eui, const std::string& secret, int type,
                        int64_t ts, const std::string& openid = kOpenid, const std::string& key = kKey) {
  V2Creds c;
  c.client_id = "V2_" + pid + "." + eui + "_" + std::to_string(type) + "_" + std::to_string(ts);
  c.username = openid + "-" + pid + "-" + eui;
  c.password = *lierda_v2_password(secret, pid, eui, key, type == 1 ? std::optional<int64_t>(ts) : std::nullopt);
  return c;
}

class StackTest : public ::testing::Test {
 protected:
  // Override to create data with the CLI before the broker starts (so it is in the first load).
  virtual void seed() {}
  virtual std::map<std::string, std::string> plugin_options() { return {}; }
  virtual std::vector<std::string> extra_conf() { return {}; }

  void SetUp() override {
    redis.start();
    seed();
    auto opts = plugin_options();
    opts.emplace("redis_port", std::to_string(redis.port()));
    opts.emplace("redis_timeout_ms", "300");
    broker = std::make_unique<Broker>(opts, true, extra_conf());
    broker->start();
    ASSERT_TRUE(broker->wait_for_log("iotgate: loaded", std::chrono::seconds(10))) << broker->log();
  }

  // Runs the CLI and expects success; returns its stdout.
  std::string cli(const std::vector<std::string>& args) {
    CommandResult r = run_cli(redis, args);
    EXPECT_EQ(r.exit_code, 0) << "iotgate " << testing::PrintToString(args) << ": " << r.err;
    return r.out;
  }
  CommandResult cli_result(const std::vector<std::string>& args) { return run_cli(redis, args); }

  void add_lierda_product(const std::string& pid, int auth_type, bool encrypted = false,
                          const std::string& openid = kOpenid, const std::string& key = kKey) {
    std::vector<std::string> args = {"product", "add", "lierda", "--openid", openid, "--product-id", pid,
                                     "--product-key", key, "--auth-type", std::to_string(auth_type)};
    if (encrypted) args.push_back("--encrypted");
    cli(args);
  }
  std::string add_lierda_device(const std::string& pid, const std::string& eui, const std::string& secret = "") {
    std::vector<std::string> args = {"device", "add", "lierda", "--product-id", pid, "--node-eui", eui};
    if (!secret.empty()) {
      args.push_back("--secret");
      args.push_back(secret);
    }
    return json_string(cli(args), "secret");
  }

  // Connects a new client; returns it when the CONNACK reason equals `expect`.
  std::unique_ptr<MqttClient> connect(const std::string& client_id, const std::optional<std::string>& user,
                                      const std::optional<std::string>& pw, int expect = 0, int protocol = 5) {
    auto c = std::make_unique<MqttClient>(client_id, protocol);
    int rc = c->connect(broker->port(), user, pw);
    EXPECT_EQ(rc, expect) << "client " << client_id;
    return c;
  }
  std::unique_ptr<MqttClient> connect_v2(const V2Creds& c, int expect = 0) {
    return connect(c.client_id, c.username, c.password, expect);
  }
  // A superuser service account that sees everything published through normal fan-out.
  std::unique_ptr<MqttClient> observer(const std::string& filter = "#") {
    if (run_cli(redis, {"account", "show", "observer"}).exit_code != 0)
      cli({"account", "add", "observer", "--password", "observer-pw", "--superuser"});
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    std::unique_ptr<MqttClient> c;
    do {  // the account may still be on its way to the broker
      c = std::make_unique<MqttClient>("observer:" + std::to_string(++observers_));
      if (c->connect(broker->port(), "observer", "observer-pw") == 0) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    } while (std::chrono::steady_clock::now() < deadline);
    EXPECT_TRUE(c->connected());
    EXPECT_LT(c->subscribe(filter, 1), 128);
    return c;
  }
  // Retries a login until it gets `expect` or `within` passes; returns how long it took.
  std::chrono::milliseconds login_eventually(const std::string& cid, const std::string& user, const std::string& pw,
                                             int expect, std::chrono::milliseconds within) {
    auto start = std::chrono::steady_clock::now();
    while (true) {
      MqttClient c(cid);
      int rc = c.connect(broker->port(), user, pw);
      auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
      if (rc == expect || took > within) {
        EXPECT_EQ(rc, expect) << cid << " after " << took.count() << " ms";
        return took;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  bool log_has(const std::string& regex, std::chrono::milliseconds timeout = std::chrono::seconds(3)) {
    return broker->wait_for_log(regex, timeout);
  }

  RedisServer redis;
  std::unique_ptr<Broker> broker;
  int observers_ = 0;
};

}  // namespace iotgate::test
