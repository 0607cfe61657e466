// The ACL matrix of each session kind.
#include <gtest/gtest.h>

#include "iotgate/accounts/accounts.h"
#include "iotgate/emu/emu.h"
#include "iotgate/identity.h"
#include "iotgate/krt/krt.h"
#include "iotgate/lierda/lierda.h"

using namespace iotgate;

namespace {
constexpr Access R = Access::read, W = Access::write, S = Access::subscribe, U = Access::unsubscribe;

Identity lierda(SessionKind kind) {
  Identity id;
  id.kind = kind;
  id.product = "AA30C505";
  id.device = "20MQTTJ000121";
  id.openid = "7ED01E2A";
  id.prefix = lierda_prefix("7ED01E2A", "AA30C505", "20MQTTJ000121");
  return id;
}
const std::string P = "/sys/7ED01E2A/AA30C505/20MQTTJ000121/";
const std::string Other = "/sys/7ED01E2A/AA30C505/20MQTTJ000122/";
}  // namespace

TEST(Classify, LierdaSuffixes) {
  for (const char* up : {"firmware_report", "ota_notify_ack", "config_report", "update_time", "uplink", "downlink_ack",
                         "downloadlink_ack", "model/property/report", "model/property/set_ack", "model/event/alarm/report",
                         "model/service/reboot/ack", "model/history/data/report", "model/hex/report",
                         "model/hex/downlink_ack", "model/hex"})
    EXPECT_EQ(classify_lierda_suffix(up), Flow::device_to_platform) << up;
  for (const char* down : {"downlink", "downloadlink", "firmware_report_ack", "ask_firmware", "ota_notify", "ask_config",
                           "download_config", "down_config", "update_time_ack", "uplink_ack", "model/property/ask",
                           "model/property/report_ack", "model/property/set", "model/event/alarm/report_ack",
                           "model/service/reboot", "model/history/data/report_ack", "model/hex/report_ack",
                           "model/hex/downlink", "model/hex_ack"})
    EXPECT_EQ(classify_lierda_suffix(down), Flow::platform_to_device) << down;
  for (const char* none : {"", "auth", "model/event//report", "model/event/a/b/report", "model/service/+/ack",
                           "model/service/#", "uplink/extra", "model/property"})
    EXPECT_EQ(classify_lierda_suffix(none), Flow::none) << none;
}

TEST(Classify, KrtAndEmuSuffixes) {
  EXPECT_EQ(classify_krt_suffix("ota/post"), Flow::device_to_platform);
  EXPECT_EQ(classify_krt_suffix("event/property/post"), Flow::device_to_platform);
  EXPECT_EQ(classify_krt_suffix("ota/set"), Flow::platform_to_device);
  EXPECT_EQ(classify_krt_suffix("post"), Flow::none);
  EXPECT_EQ(classify_krt_suffix("ota//post"), Flow::none);
  EXPECT_EQ(classify_krt_suffix("ota/get"), Flow::none);
  EXPECT_EQ(classify_emu_suffix("ota/emu_version/result"), Flow::device_to_platform);
  EXPECT_EQ(classify_emu_suffix("ota/emu_upgrade/command"), Flow::platform_to_device);
  EXPECT_EQ(classify_emu_suffix("ota/a/b/result"), Flow::none);
  EXPECT_EQ(classify_emu_suffix("ota//result"), Flow::none);
  EXPECT_EQ(classify_emu_suffix("other/x/result"), Flow::none);
}

TEST(Acl, LierdaAuthSession) {
  Identity id = lierda(SessionKind::lierda_auth);
  EXPECT_TRUE(device_session_allows(id, W, "/sys/device/auth"));
  EXPECT_FALSE(device_session_allows(id, W, P + "uplink"));
  EXPECT_FALSE(device_session_allows(id, W, P + "downlink"));
  EXPECT_TRUE(device_session_allows(id, S, P + "downlink"));
  // It reads nothing there: its replies are direct publishes, and any ProductKey holder may open an AUTH session.
  EXPECT_FALSE(device_session_allows(id, R, P + "downlink"));
  EXPECT_FALSE(device_session_allows(id, S, P + "+"));
  EXPECT_FALSE(device_session_allows(id, S, P + "#"));
  EXPECT_FALSE(device_session_allows(id, S, Other + "downlink"));
  EXPECT_FALSE(device_session_allows(id, R, P + "ota_notify"));
  EXPECT_FALSE(device_session_allows(id, S, "/sys/device/auth"));
  EXPECT_TRUE(device_session_allows(id, U, "anything"));
}

TEST(Acl, LierdaV2Session) {
  Identity id = lierda(SessionKind::lierda_v2);
  EXPECT_TRUE(device_session_allows(id, W, P + "uplink"));
  EXPECT_TRUE(device_session_allows(id, W, P + "firmware_report"));
  EXPECT_TRUE(device_session_allows(id, W, P + "model/event/alarm/report"));
  EXPECT_FALSE(device_session_allows(id, W, P + "downlink"));
  EXPECT_FALSE(device_session_allows(id, W, P + "ota_notify"));
  EXPECT_FALSE(device_session_allows(id, W, Other + "uplink"));
  EXPECT_FALSE(device_session_allows(id, W, "/sys/device/auth"));
  EXPECT_TRUE(device_session_allows(id, R, P + "downlink"));
  EXPECT_TRUE(device_session_allows(id, R, P + "downloadlink"));
  EXPECT_TRUE(device_session_allows(id, R, P + "down_config"));
  EXPECT_TRUE(device_session_allows(id, R, P + "model/service/reboot"));
  EXPECT_FALSE(device_session_allows(id, R, P + "uplink"));
  EXPECT_FALSE(device_session_allows(id, R, Other + "downlink"));
  EXPECT_TRUE(device_session_allows(id, S, P + "+"));
  EXPECT_TRUE(device_session_allows(id, S, P + "#"));
  EXPECT_TRUE(device_session_allows(id, S, P + "downlink"));
  EXPECT_FALSE(device_session_allows(id, S, "/sys/7ED01E2A/AA30C505/+/downlink"));
  EXPECT_FALSE(device_session_allows(id, S, "#"));
  EXPECT_FALSE(device_session_allows(id, S, Other + "+"));
}

TEST(Acl, KrtSessions) {
  Identity reg;
  reg.kind = SessionKind::krt_register;
  reg.product = "P1";
  reg.device = "D1";
  reg.prefix = krt_prefix("P1", "D1");
  EXPECT_TRUE(device_session_allows(reg, W, "/sys/P1/D1/thing/register/post"));
  EXPECT_TRUE(device_session_allows(reg, S, "/sys/P1/D1/thing/register/set"));
  EXPECT_TRUE(device_session_allows(reg, R, "/sys/P1/D1/thing/register/set"));
  EXPECT_FALSE(device_session_allows(reg, W, "/sys/P1/D1/thing/ota/post"));
  EXPECT_FALSE(device_session_allows(reg, S, "/sys/P1/D1/thing/#"));
  EXPECT_FALSE(device_session_allows(reg, W, "/sys/P1/D2/thing/register/post"));

  Identity dev = reg;
  dev.kind = SessionKind::krt_device;
  EXPECT_TRUE(device_session_allows(dev, W, "/sys/P1/D1/thing/ota/post"));
  EXPECT_TRUE(device_session_allows(dev, R, "/sys/P1/D1/thing/ota/set"));
  EXPECT_TRUE(device_session_allows(dev, S, "/sys/P1/D1/thing/ota/set"));
  EXPECT_TRUE(device_session_allows(dev, S, "/sys/P1/D1/thing/#"));
  EXPECT_FALSE(device_session_allows(dev, W, "/sys/P1/D1/thing/ota/set"));
  EXPECT_FALSE(device_session_allows(dev, R, "/sys/P1/D1/thing/ota/post"));
  EXPECT_FALSE(device_session_allows(dev, W, "/sys/P1/D1/thing/register/post"));
  EXPECT_FALSE(device_session_allows(dev, R, "/sys/P1/D1/thing/register/set"));
  EXPECT_FALSE(device_session_allows(dev, W, "/sys/P1/D2/thing/ota/post"));
  EXPECT_FALSE(device_session_allows(dev, S, "/sys/P1/+/thing/ota/set"));
}

TEST(Acl, EmuGateway) {
  Identity id;
  id.kind = SessionKind::emu_gateway;
  id.product = "PK1";
  id.device = "gw1";
  id.prefix = emu_prefix("wudun", "PK1", "gw1");
  EXPECT_EQ(id.prefix, "v1/wudun/PK1/gw1/");
  EXPECT_TRUE(device_session_allows(id, W, "v1/wudun/PK1/gw1/ota/emu_version/result"));
  EXPECT_FALSE(device_session_allows(id, W, "v1/wudun/PK1/gw1/ota/emu_version/command"));
  EXPECT_FALSE(device_session_allows(id, W, "v1/wudun/PK1/gw2/ota/emu_version/result"));
  EXPECT_TRUE(device_session_allows(id, R, "v1/wudun/PK1/gw1/ota/emu_upgrade/command"));
  EXPECT_FALSE(device_session_allows(id, R, "v1/wudun/PK1/gw1/ota/emu_upgrade/result"));
  EXPECT_TRUE(device_session_allows(id, S, "v1/wudun/PK1/gw1/ota/+/command"));
  EXPECT_TRUE(device_session_allows(id, S, "v1/wudun/PK1/gw1/ota/emu_upgrade/command"));
  EXPECT_FALSE(device_session_allows(id, S, "v1/wudun/PK1/gw1/ota/#"));
  EXPECT_FALSE(device_session_allows(id, S, "v1/wudun/PK1/+/ota/+/command"));
  EXPECT_FALSE(device_session_allows(id, S, "v1/wudun/PK1/gw1/ota/+/result"));
}

TEST(Acl, ServiceAccount) {
  Account a;
  a.name = "app";
  a.rules = {*parse_account_rule("read /sys/#"), *parse_account_rule("write /sys/+/+/+/downlink"),
             *parse_account_rule("readwrite apps/%u/%c/#")};
  EXPECT_TRUE(account_allows(a, "c1", "app", R, "/sys/A/B/C/uplink"));
  EXPECT_TRUE(account_allows(a, "c1", "app", S, "/sys/#"));
  EXPECT_TRUE(account_allows(a, "c1", "app", S, "/sys/+/+/+/uplink"));
  EXPECT_FALSE(account_allows(a, "c1", "app", S, "#"));
  EXPECT_FALSE(account_allows(a, "c1", "app", W, "/sys/A/B/C/uplink"));
  EXPECT_TRUE(account_allows(a, "c1", "app", W, "/sys/A/B/C/downlink"));
  EXPECT_TRUE(account_allows(a, "c1", "app", W, "apps/app/c1/x"));
  EXPECT_TRUE(account_allows(a, "c1", "app", R, "apps/app/c1/x"));
  EXPECT_FALSE(account_allows(a, "c2", "app", W, "apps/app/c1/x"));
  EXPECT_FALSE(account_allows(a, "c1", "bob", W, "apps/app/c1/x"));
  // A client id carrying a wildcard or separator must not widen %c.
  EXPECT_FALSE(account_allows(a, "+", "app", S, "apps/app/+/#"));
  EXPECT_FALSE(account_allows(a, "a/b", "app", W, "apps/app/a/b/x"));
  EXPECT_TRUE(account_allows(a, "c1", "app", U, "whatever"));

  Account su;
  su.superuser = true;
  EXPECT_TRUE(account_allows(su, "x", "y", W, "anything/at/all"));
  EXPECT_TRUE(account_allows(su, "x", "y", S, "#"));

  Account none;
  EXPECT_FALSE(account_allows(none, "x", "y", R, "a"));
}

// The stem the session index keeps for an account's reads: the first plain "X/#" read rule, none for %u / %c
// rules, '+' filters, write-only rules or "#".
TEST(Acl, ReadSubtreeStemAndItsSubtree) {
  Account a;
  a.rules = {*parse_account_rule("write w/#"), *parse_account_rule("read apps/%u/#"), *parse_account_rule("read a/+/b"),
             *parse_account_rule("read #"), *parse_account_rule("readwrite /sys/#"), *parse_account_rule("read x/#")};
  ASSERT_TRUE(read_subtree_stem(a));
  EXPECT_EQ(*read_subtree_stem(a), "/sys");
  a.rules.pop_back();
  a.rules.pop_back();
  EXPECT_FALSE(read_subtree_stem(a));
  EXPECT_TRUE(in_subtree("/sys", "/sys"));
  EXPECT_TRUE(in_subtree("/sys", "/sys/A/B"));
  EXPECT_TRUE(in_subtree("/sys", TopicText("/sys/A/B")));  // a C string, measured only as far as needed
  EXPECT_FALSE(in_subtree("/sys", "/system/A"));
  EXPECT_FALSE(in_subtree("/sys", TopicText("/sy")));
  EXPECT_FALSE(in_subtree("/sys", "sys/A"));
  EXPECT_TRUE(in_subtree("", "/a"));  // "/#"
  EXPECT_FALSE(in_subtree("", "a"));
}

TEST(AccountRule, Parser) {
  auto r = parse_account_rule("readwrite a/+/b");
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->read);
  EXPECT_TRUE(r->write);
  EXPECT_EQ(r->filter, "a/+/b");
  EXPECT_TRUE(parse_account_rule("read #"));
  EXPECT_TRUE(parse_account_rule("write a/b")->write);
  EXPECT_FALSE(parse_account_rule("write a/b")->read);
  for (const char* bad : {"", "read", "read ", "rw a/b", "READ a", "read a/#/b", "read a+", "write  a"})
    EXPECT_FALSE(parse_account_rule(bad)) << bad;
}

// Rules of the common shapes are matched by comparing a prefix; every answer must be topic_matches', whether the
// topic comes as the broker's C string or as a string_view.
TEST(AccountRule, ShapesMatchAsTopicMatchesDoes) {
  const std::pair<const char*, AccountRule::Shape> rules[] = {
      {"#", AccountRule::Shape::all},           {"a/#", AccountRule::Shape::subtree},
      {"/#", AccountRule::Shape::subtree},      {"/sys/#", AccountRule::Shape::subtree},
      {"a/b", AccountRule::Shape::exact},       {"/", AccountRule::Shape::exact},
      {"a/+/c", AccountRule::Shape::levels},    {"+/#", AccountRule::Shape::levels},
      {"a/%u/#", AccountRule::Shape::levels}};
  const char* topics[] = {"a",       "a/",    "a/b",  "ab",       "/",      "", "/sys", "/sys/x/y",
                          "$SYS/a",  "a/b/c", "a/x/c", "/sys2/x", "b/a/#x", "//"};
  for (const auto& [filter, shape] : rules) {
    auto rule = parse_account_rule(std::string("read ") + filter);
    ASSERT_TRUE(rule) << filter;
    EXPECT_EQ(rule->shape, shape) << filter;
    if (rule->substitutes) continue;
    Account a;
    a.rules = {*rule};
    for (const char* t : topics) {
      const std::string text = t;
      EXPECT_EQ(account_allows(a, "c", "u", R, t), topic_matches(filter, t)) << filter << " vs '" << t << "'";
      EXPECT_EQ(account_allows(a, "c", "u", R, std::string_view(text)), topic_matches(filter, t))
          << filter << " vs '" << t << "'";
      EXPECT_FALSE(account_allows(a, "c", "u", W, t)) << filter << " is a read rule";
    }
  }
}

// The broker's topics come as C strings: read only as far as the prefix reaches, the same answers, and the
// suffix handed back for the platform's handlers.
TEST(Acl, DeviceTopicsAsTheBrokerPassesThem) {
  Identity id = lierda(SessionKind::lierda_v2);
  std::string_view suffix;
  EXPECT_TRUE(device_session_allows(id.kind, id.prefix, W, (P + "uplink").c_str(), &suffix));
  EXPECT_EQ(suffix, "uplink");
  EXPECT_TRUE(device_session_allows(id.kind, id.prefix, W, (P + "model/event/alarm/report").c_str(), &suffix));
  EXPECT_EQ(suffix, "model/event/alarm/report");
  suffix = "unchanged";
  EXPECT_FALSE(device_session_allows(id.kind, id.prefix, W, (P + "downlink").c_str(), &suffix));
  EXPECT_EQ(suffix, "unchanged");
  for (const std::string& shorter : {std::string(), P.substr(0, 10), P.substr(0, P.size() - 1), P})
    EXPECT_FALSE(device_session_allows(id, W, shorter.c_str())) << shorter;
  EXPECT_FALSE(device_session_allows(id, W, (Other + "uplink").c_str()));
  EXPECT_TRUE(device_session_allows(id, R, (P + "downlink").c_str()));
  Identity auth = lierda(SessionKind::lierda_auth);
  EXPECT_TRUE(device_session_allows(auth, W, "/sys/device/auth"));
  EXPECT_FALSE(device_session_allows(auth, W, "/sys/device/auth/x"));
  EXPECT_FALSE(device_session_allows(auth, W, "/sys/device/aut"));
}
