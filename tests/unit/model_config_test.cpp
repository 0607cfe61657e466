#include <gtest/gtest.h>

#include "iotgate/config.h"
#include "iotgate/ids.h"
#include "iotgate/model.h"

using namespace iotgate;

TEST(Config, DefaultsWhenNoOptions) {
  auto c = std::get<Config>(parse_config({}));
  EXPECT_EQ(c.redis_host, "127.0.0.1");
  EXPECT_EQ(c.redis_port, 6379);
  EXPECT_EQ(c.redis_db, 0);
  EXPECT_EQ(c.key_prefix, "iotgate:");
  EXPECT_EQ(c.clock_skew, 60);
  EXPECT_EQ(c.session_key_ttl, 172800);
}

TEST(Config, ParsesEveryOption) {
  auto c = std::get<Config>(parse_config({{"redis_host", "10.0.0.5"}, {"redis_port", "6380"}, {"redis_db", "3"},
                                          {"redis_password", "pw"}, {"key_prefix", "x:"}, {"clock_skew", "5"},
                                          {"log_level", "debug"}, {"session_key_ttl", "3600"},
                                          {"max_payload", "1024"}, {"redis_timeout_ms", "500"},
                                          {"log_burst", "3"}, {"log_window", "2"},
                                          {"bind_account_client_ids", "false"}, {"auth_spray_usernames", "7"}}));
  EXPECT_EQ(c.redis_host, "10.0.0.5");
  EXPECT_EQ(c.redis_port, 6380);
  EXPECT_EQ(c.redis_db, 3);
  EXPECT_EQ(c.redis_password, "pw");
  EXPECT_EQ(c.key_prefix, "x:");
  EXPECT_EQ(c.clock_skew, 5);
  EXPECT_EQ(c.log_level, LogLevel::debug);
  EXPECT_EQ(c.session_key_ttl, 3600);
  EXPECT_EQ(c.max_payload, 1024u);
  EXPECT_EQ(c.redis_timeout_ms, 500);
  EXPECT_EQ(c.log_burst, 3);
  EXPECT_EQ(c.log_window, 2);
  EXPECT_FALSE(c.bind_account_client_ids);
  EXPECT_EQ(c.auth_spray_usernames, 7);
  EXPECT_TRUE(std::get<Config>(parse_config({})).bind_account_client_ids);
  EXPECT_TRUE(std::holds_alternative<std::string>(parse_config({{"bind_account_client_ids", "yes"}})));
}

// "01" and "1" must not name one number: two spellings of a type 1 timestamp were two client ids with one password.
TEST(Ids, DecimalsInTheirCanonicalSpellingOnly) {
  int64_t n = -1;
  for (const char* good : {"0", "1", "1675404867", "-5", "9223372036854775807"}) EXPECT_TRUE(parse_decimal(good, n)) << good;
  EXPECT_TRUE(parse_decimal("1675404867", n) && n == 1675404867);
  for (const char* bad : {"", "01", "00", "-0", "-01", "+1", " 1", "1 ", "1a", "-", "9223372036854775808", "0x1"})
    EXPECT_FALSE(parse_decimal(bad, n)) << bad;
}

TEST(Config, RefusesBadOptionsWithTheirName) {
  auto msg = [](std::string k, std::string v) { return std::get<std::string>(parse_config({{k, v}})); };
  EXPECT_NE(msg("redis_port", "0").find("plugin_opt_redis_port"), std::string::npos);
  EXPECT_NE(msg("redis_port", "70000").find("redis_port"), std::string::npos);
  EXPECT_NE(msg("redis_port", "12ab").find("redis_port"), std::string::npos);
  EXPECT_NE(msg("redis_db", "-1").find("redis_db"), std::string::npos);
  EXPECT_NE(msg("log_level", "loud").find("log_level"), std::string::npos);
  EXPECT_NE(msg("key_prefix", "").find("key_prefix"), std::string::npos);
  EXPECT_NE(msg("key_prefix", "a b").find("key_prefix"), std::string::npos);
  EXPECT_NE(msg("clock_skew", "").find("clock_skew"), std::string::npos);
  EXPECT_NE(msg("redis_hots", "x").find("unknown option plugin_opt_redis_hots"), std::string::npos);
}

TEST(Model, ProductFromFields) {
  std::string err;
  auto p = product_from_fields("AA30C505", {{"protocol", "lierda"}, {"enabled", "1"}, {"openid", "7ED01E2A"},
                                            {"product_key", "DB6FACEF35BEBA0517712F0E4BE32936"}, {"auth_type", "1"},
                                            {"encrypted", "1"}},
                               &err);
  ASSERT_TRUE(p) << err;
  EXPECT_EQ(p->protocol, Protocol::lierda);
  EXPECT_EQ(p->auth_type, 1);
  EXPECT_TRUE(p->encrypted);
  EXPECT_FALSE(product_from_fields("AA30C505", {{"protocol", "lierda"}, {"openid", "7ED01E2A"}}, &err));
  // 2^32 + 1 must not wrap into auth type 1 (found by fuzz_acl_rules).
  EXPECT_FALSE(product_from_fields("AA30C505", {{"protocol", "lierda"}, {"openid", "7ED01E2A"},
                                                {"product_key", "DB6FACEF35BEBA0517712F0E4BE32936"},
                                                {"auth_type", "4294967297"}}, &err));
  EXPECT_FALSE(product_from_fields("X", {{"protocol", "mqtt"}}, &err));
  EXPECT_FALSE(product_from_fields("P", {{"protocol", "emu"}, {"namespace", "other"}}, &err));
  auto k = product_from_fields("P1", {{"protocol", "krt"}, {"product_secret", "s"}, {"dynamic_register", "1"},
                                      {"auto_create", "1"}, {"limit", "5"}, {"enabled", "0"}},
                               &err);
  ASSERT_TRUE(k);
  EXPECT_TRUE(k->dynamic_register && k->auto_create);
  EXPECT_EQ(k->limit, 5);
  EXPECT_FALSE(k->enabled);
}

TEST(Model, DeviceAndAccountFromFields) {
  std::string err;
  auto d = device_from_fields("P", "D", {{"enabled", "0"}, {"last_offline", "123"}, {"activated", "1"}}, &err);
  ASSERT_TRUE(d);
  EXPECT_FALSE(d->enabled);
  EXPECT_EQ(d->last_offline, 123);
  EXPECT_TRUE(d->activated);
  EXPECT_FALSE(device_from_fields("P", "D", {{"secret_hash", "$7$bad"}}, &err));
  auto a = account_from_fields("app", {{"rules", R"(["read a/#","write b"])"}, {"superuser", "0"}}, &err);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->rules.size(), 2u);
  EXPECT_FALSE(account_from_fields("app", {{"rules", "not json"}}, &err));
  EXPECT_FALSE(account_from_fields("app", {{"rules", R"(["read a/#/b"])"}}, &err));
  EXPECT_FALSE(account_from_fields("app", {{"rules", R"([1])"}}, &err));
}

TEST(Model, RegistryIndexesEmuUidsAndCountsAutoCreated) {
  Registry r;
  Product emu;
  emu.id = "PK";
  emu.protocol = Protocol::emu;
  emu.emu_namespace = "wudun";
  r.put_product(emu);
  Device gw;
  gw.product = "PK";
  gw.id = "gw1";
  r.put_device(gw);
  ASSERT_TRUE(r.emu_device_by_uid("gw1"));
  EXPECT_EQ(r.emu_device_by_uid("gw1")->product, "PK");
  r.remove_device("PK", "gw1");
  EXPECT_FALSE(r.emu_device_by_uid("gw1"));
  Device a;
  a.product = "K";
  a.id = "a";
  a.created_by_device = true;
  r.put_device(a);
  a.id = "b";
  r.put_device(a);
  a.id = "c";
  a.created_by_device = false;
  r.put_device(a);
  EXPECT_EQ(r.auto_created("K"), 2u);
  a.id = "b";
  a.created_by_device = true;
  r.put_device(a);  // replacing a device does not count it twice
  EXPECT_EQ(r.auto_created("K"), 2u);
  r.remove_device("K", "a");
  EXPECT_EQ(r.auto_created("K"), 1u);
  r.remove_product("K");
  EXPECT_EQ(r.device_count(), 0u);
  EXPECT_EQ(r.auto_created("K"), 0u);
}

// Found by fuzz_acl_rules: deleting a product must not drop another product's EMU gateway of the same id.
TEST(Model, RemovingAProductKeepsOtherGatewaysWithTheSameId) {
  Registry r;
  Product emu;
  emu.id = "E2";
  emu.protocol = Protocol::emu;
  emu.emu_namespace = "wudun";
  r.put_product(emu);
  Product krt;
  krt.id = "K1";
  krt.protocol = Protocol::krt;
  r.put_product(krt);
  Device gw;
  gw.product = "E2";
  gw.id = "d0";
  r.put_device(gw);
  Device kd;
  kd.product = "K1";
  kd.id = "d0";
  r.put_device(kd);
  r.remove_product("K1");
  ASSERT_TRUE(r.emu_device_by_uid("d0"));
  EXPECT_EQ(r.emu_device_by_uid("d0")->product, "E2");
}

TEST(Log, RateLimitsPerReason) {
  std::vector<std::string> lines;
  Log log([&](LogLevel, const std::string& s) { lines.push_back(s); }, LogLevel::info, 3, 3600);
  for (int i = 0; i < 10; ++i) log.limited(LogLevel::notice, "wrong-password", "line " + std::to_string(i));
  log.limited(LogLevel::notice, "other", "other line");
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(lines[2], "line 2");
  EXPECT_EQ(lines[3], "other line");
  log.limited(LogLevel::debug, "x", "hidden at info");
  EXPECT_EQ(lines.size(), 4u);
}
