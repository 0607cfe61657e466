// iotgate-api with --redis sentinel://: the primary found through Redis Sentinel, and found again after a failover
// (docs/deployment.md, "Redis Sentinel"); the URI's parsing; a link on a server that is no primary (READONLY).
#include <iostream>

#include "api_fixture.h"
#include "redis_link.h"
#include "sentinel_set.h"

namespace iotgate::test {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;
using iotgate::api::parse_redis_uri;

TEST(ApiRedisUri, SentinelUris) {
  auto u = parse_redis_uri("sentinel://10.0.0.1:26380,10.0.0.2,[::1]:5000/mymaster/2");
  ASSERT_EQ(u.sentinels.size(), 3u);
  EXPECT_EQ(u.sentinels[0], (HostPort{"10.0.0.1", 26380}));
  EXPECT_EQ(u.sentinels[1], (HostPort{"10.0.0.2", 26379}));
  EXPECT_EQ(u.sentinels[2], (HostPort{"::1", 5000}));
  EXPECT_EQ(u.master_name, "mymaster");
  EXPECT_EQ(u.db, 2);
  EXPECT_EQ(u.password, "");
  EXPECT_EQ(api::describe(u), "sentinel master mymaster via 10.0.0.1:26380,10.0.0.2:26379,[::1]:5000");

  u = parse_redis_uri("sentinel://s3cret@h1:1,h2:2/m");
  EXPECT_EQ(u.password, "s3cret");
  EXPECT_EQ(u.user, "");
  EXPECT_EQ(u.db, 0);
  EXPECT_EQ(u.master_name, "m");
  EXPECT_EQ(api::describe(u), "sentinel master m via h1:1,h2:2");  // no password
  u = parse_redis_uri("sentinel://ops:p:w@h1/m/");
  EXPECT_EQ(u.user, "ops");
  EXPECT_EQ(u.password, "p:w");
  EXPECT_EQ(u.sentinels, (std::vector<HostPort>{{"h1", 26379}}));

  // redis:// as before
  u = parse_redis_uri("redis://:pw@10.1.1.1:6380/4");
  EXPECT_TRUE(u.sentinels.empty());
  EXPECT_EQ(u.host, "10.1.1.1");
  EXPECT_EQ(u.port, 6380);
  EXPECT_EQ(u.db, 4);
  EXPECT_EQ(api::describe(u), "10.1.1.1:6380");

  for (const char* bad : {"sentinel://h1:1", "sentinel://h1:1/", "sentinel:///m", "sentinel://h1:1,,h2:2/m",
                          "sentinel://h1:0/m", "sentinel://h1:1/m/x", "sentinel://h1:1/a,b", "sentinel://h 1:1/m",
                          "http://h1/m"})
    EXPECT_THROW(parse_redis_uri(bad), std::invalid_argument) << bad;
}

class ApiSentinelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    set.start();
    cli({"product", "add", "lierda", "--openid", "7ED01E2A", "--product-id", "AA30C505", "--auth-type", "1"});
    cli({"device", "add", "lierda", "--product-id", "AA30C505", "--node-eui", "DEV001"});
    token = json_string(cli({"token", "add", "--member", "alice"}), "token");
    ASSERT_FALSE(token.empty());
    // One worker thread: one Redis link, whose connection the failover breaks.
    api = std::make_unique<ApiProcess>(set.server(0), "iotgate:",
                                       std::vector<std::string>{"--redis", set.uri(), "--threads", "1"});
    client = std::make_unique<ApiClient>(api->port(), token);
  }
  std::string cli(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {std::string(IOTGATE_SOURCE_DIR) + "/scripts/iotgate"};
    argv.insert(argv.end(), args.begin(), args.end());
    CommandResult r = run_command(argv, {{"IOTGATE_REDIS", set.uri()}, {"IOTGATE_PREFIX", "iotgate:"}});
    EXPECT_EQ(r.exit_code, 0) << testing::PrintToString(args) << ": " << r.err;
    return r.out;
  }
  HttpResult set_enabled(bool on) {
    return client->put("/v2/products/AA30C505/devices/DEV001/enabled", on ? R"({"enabled":true})" : R"({"enabled":false})");
  }

  SentinelSet set;
  std::string token;
  std::unique_ptr<ApiProcess> api;
  std::unique_ptr<ApiClient> client;
};

TEST_F(ApiSentinelTest, FindsThePrimaryThroughTheSentinelsAndAgainAfterAFailover) {
  RedisServer& old_primary = set.server(0);
  RedisServer& replica = set.server(1);
  EXPECT_NE(api->log().find("(redis sentinel master iotgate-main via 127.0.0.1:"), std::string::npos) << api->log();
  auto me = client->get("/v2/me");
  ASSERT_EQ(me.status, 200) << me.body;
  EXPECT_EQ(me.str("member"), "alice");
  ASSERT_EQ(set_enabled(false).status, 200);
  EXPECT_EQ(old_primary.cli({"HGET", "iotgate:device:AA30C505:DEV001", "enabled"}), "0");
  ASSERT_TRUE(eventually([&] { return replica.cli({"HGET", "iotgate:device:AA30C505:DEV001", "enabled"}) == "0"; },
                         seconds(10)));

  const auto killed = Clock::now();
  old_primary.kill();
  ASSERT_TRUE(eventually([&] { return set.all_name(replica.port()) && SentinelSet::role(replica) == "master"; },
                         seconds(60)))
      << "no failover\n" << set.sentinel_log(0);
  const auto promoted = Clock::now();
  // The link's connection died with the old primary while it was idle: the first request after the failover
  // reopens it, on the primary the sentinels name now, and is answered.
  me = client->get("/v2/me");
  EXPECT_EQ(me.status, 200) << me.body;
  auto changed = set_enabled(true);
  EXPECT_EQ(changed.status, 200) << changed.body;
  EXPECT_EQ(replica.cli({"HGET", "iotgate:device:AA30C505:DEV001", "enabled"}), "1");
  std::cout << "[ timing   ] primary killed -> promotion seen " << std::chrono::duration<double>(promoted - killed).count()
            << " s; -> API answered from the new primary " << std::chrono::duration<double>(Clock::now() - killed).count()
            << " s\n";

  // The old primary comes back (a replica once the sentinels say so): the API stays on the new one.
  old_primary.start();
  EXPECT_TRUE(eventually([&] { return SentinelSet::role(old_primary) == "slave"; }, seconds(60)))
      << "the old primary (port " << old_primary.port() << ") says " << SentinelSet::role(old_primary) << "\n"
      << old_primary.log() << "\nsentinel 0:\n" << set.sentinel_log(0);
  ASSERT_EQ(set_enabled(false).status, 200);
  EXPECT_EQ(replica.cli({"HGET", "iotgate:device:AA30C505:DEV001", "enabled"}), "0");
}

// A failover that leaves the old primary running (SENTINEL FAILOVER): it takes writes until the sentinels demote it,
// seconds later, and loses them then. The API asks the sentinels (at most twice a second) and moves at once.
TEST_F(ApiSentinelTest, AnOldPrimaryStillRunningIsLeftAsSoonAsTheSentinelsNameAnother) {
  RedisServer& old_primary = set.server(0);
  RedisServer& replica = set.server(1);
  ASSERT_EQ(set_enabled(false).status, 200);
  ASSERT_TRUE(eventually([&] { return replica.cli({"HGET", "iotgate:device:AA30C505:DEV001", "enabled"}) == "0"; },
                         seconds(10)));
  auto answer = redis_call(set.sentinel_port(0), {"SENTINEL", "FAILOVER", SentinelSet::kMaster});
  ASSERT_TRUE(answer && *answer == std::vector<std::string>{"OK"});
  ASSERT_TRUE(eventually([&] { return set.all_name(replica.port()) && SentinelSet::role(replica) == "master"; },
                         seconds(30)));
  const auto named = Clock::now();
  // Until the API is on the new primary its writes go to the old one (and are lost there): within seconds, not
  // once the sentinels demote the old one.
  EXPECT_TRUE(eventually(
      [&] {
        auto r = set_enabled(true);
        return r.status == 200 && replica.cli({"HGET", "iotgate:device:AA30C505:DEV001", "enabled"}) == "1";
      },
      seconds(4)))
      << "the API stayed on the old primary";
  std::cout << "[ timing   ] sentinels name the new primary -> API writes there: "
            << std::chrono::duration<double>(Clock::now() - named).count() << " s; the old primary is a "
            << SentinelSet::role(old_primary) << "\n";
  EXPECT_EQ(SentinelSet::role(old_primary), "master") << "not demoted yet: what the API left, it left by itself";
}

// A link whose server is no primary (a failover demoted it): READONLY is Redis being away (503), and the link
// reconnects, to the primary the sentinels name.
TEST_F(ApiSentinelTest, ALinkOnAReplicaGetsReadonlyAsUnavailable) {
  api::RedisLink on_replica(parse_redis_uri(set.server(1).uri()), seconds(2), seconds(2));
  EXPECT_EQ(on_replica.command({"PING"})->type, REDIS_REPLY_STATUS);
  try {
    on_replica.command({"SET", "iotgate:x", "1"});
    ADD_FAILURE() << "a write on a replica was answered";
  } catch (const api::RedisUnavailable& e) {
    EXPECT_NE(std::string(e.what()).find("READONLY"), std::string::npos) << e.what();
  }
  api::RedisLink through_sentinels(parse_redis_uri(set.uri()), seconds(2), seconds(2));
  EXPECT_EQ(through_sentinels.command({"SET", "iotgate:x", "1"})->type, REDIS_REPLY_STATUS);
  EXPECT_EQ(through_sentinels.address(), (HostPort{"127.0.0.1", set.server(0).port()}));
  EXPECT_EQ(set.server(0).cli({"GET", "iotgate:x"}), "1");
}

}  // namespace
}  // namespace iotgate::test
