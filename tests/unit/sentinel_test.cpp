// Redis Sentinel: the plugin's options, and finding the primary (SentinelResolver, RedisStore::connect) against
// stand-ins for sentinels and Redis servers that answer each command as the test says.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "store_jobs.h"
#include "iotgate/config.h"
#include "iotgate/sentinel.h"
#include "iotgate/store.h"

using namespace iotgate;

namespace {

std::string bulk(const std::string& s) { return "$" + std::to_string(s.size()) + "\r\n" + s + "\r\n"; }
std::string array(const std::vector<std::string>& items) {
  std::string out = "*" + std::to_string(items.size()) + "\r\n";
  for (const auto& i : items) out += bulk(i);
  return out;
}

// A server on a free loopback port that reads RESP commands and answers each with answer(argv), a thread per
// connection; it records every command.
class FakeServer {
 public:
  using Answer = std::function<std::string(const std::vector<std::string>&)>;
  explicit FakeServer(Answer answer) : answer_(std::move(answer)) {
    listener_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    listen(listener_, 8);
    socklen_t len = sizeof addr;
    getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] {
      while (true) {
        int conn = accept(listener_, nullptr, nullptr);
        if (conn < 0) return;
        std::lock_guard lock(mu_);
        conns_.push_back(conn);
        serving_.emplace_back([this, conn] { serve(conn); });
      }
    });
  }
  ~FakeServer() {
    shutdown(listener_, SHUT_RDWR);
    close(listener_);
    thread_.join();
    for (int c : conns_) shutdown(c, SHUT_RDWR);
    for (auto& t : serving_) t.join();
    for (int c : conns_) close(c);
  }
  int port() const { return port_; }
  HostPort at() const { return HostPort{"127.0.0.1", port_}; }
  std::vector<std::string> commands() {
    std::lock_guard lock(mu_);
    return commands_;
  }

 private:
  void serve(int conn) {
    std::string in;
    char buf[4096];
    while (true) {
      std::vector<std::string> argv;
      while (!parse(in, argv)) {
        ssize_t n = read(conn, buf, sizeof buf);
        if (n <= 0) return;
        in.append(buf, static_cast<size_t>(n));
      }
      {
        std::lock_guard lock(mu_);
        std::string joined;
        for (const auto& a : argv) joined += (joined.empty() ? "" : " ") + a;
        commands_.push_back(joined);
      }
      std::string reply = answer_(argv);
      if (reply.empty()) return;  // hang up
      if (write(conn, reply.data(), reply.size()) < 0) return;
    }
  }
  // One command (*N then N bulk strings) from the front of `in`, removed from it; false when incomplete.
  static bool parse(std::string& in, std::vector<std::string>& argv) {
    argv.clear();
    size_t pos = 0;
    auto line = [&](std::string& out) {
      size_t end = in.find("\r\n", pos);
      if (end == std::string::npos) return false;
      out = in.substr(pos, end - pos);
      pos = end + 2;
      return true;
    };
    std::string head;
    if (!line(head) || head.empty() || head[0] != '*') return false;
    int n = std::stoi(head.substr(1));
    for (int i = 0; i < n; ++i) {
      std::string len;
      if (!line(len) || len.empty() || len[0] != '$') return false;
      size_t l = std::stoul(len.substr(1));
      if (in.size() < pos + l + 2) return false;
      argv.push_back(in.substr(pos, l));
      pos += l + 2;
    }
    in.erase(0, pos);
    return true;
  }

  Answer answer_;
  int listener_ = -1;
  int port_ = 0;
  std::thread thread_;
  std::mutex mu_;
  std::vector<std::string> commands_;
  std::vector<int> conns_;
  std::vector<std::thread> serving_;
};

// A Redis server whose ROLE is `role`; OK to anything else.
FakeServer::Answer redis_with_role(std::string role) {
  return [role](const std::vector<std::string>& argv) -> std::string {
    if (argv[0] == "ROLE") return role == "master" ? "*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n" : array({role});
    return "+OK\r\n";
  };
}
// A sentinel that names `primary` as the primary of "main".
FakeServer::Answer sentinel_naming(HostPort primary, std::string password = "") {
  auto authed = std::make_shared<bool>(password.empty());
  return [primary, password, authed](const std::vector<std::string>& argv) -> std::string {
    if (argv[0] == "AUTH") {
      *authed = argv.size() == 2 && argv[1] == password;
      return *authed ? "+OK\r\n" : "-WRONGPASS invalid username-password pair\r\n";
    }
    if (!*authed) return "-NOAUTH Authentication required.\r\n";
    if (argv.size() == 3 && argv[0] == "SENTINEL" && argv[1] == "get-master-addr-by-name") {
      if (argv[2] != "main") return "*-1\r\n";
      return array({primary.host, std::to_string(primary.port)});
    }
    return "-ERR unknown command\r\n";
  };
}

Config sentinel_config(const std::vector<HostPort>& sentinels) {
  Config c;
  c.redis_host = "127.0.0.1";
  c.redis_port = 1;  // never used with sentinels
  c.redis_sentinels = sentinels;
  c.redis_master_name = "main";
  c.redis_timeout_ms = 1000;
  return c;
}

constexpr HostPort kNowhere{"127.0.0.1", 1};  // connection refused

}  // namespace

TEST(SentinelOptions, HostPortLists) {
  std::string why;
  auto l = parse_host_ports("10.0.0.1:26380, redis-s2 ,[::1]:5000,[fe80::1]", kSentinelPort, &why);
  ASSERT_TRUE(l) << why;
  ASSERT_EQ(l->size(), 4u);
  EXPECT_EQ((*l)[0], (HostPort{"10.0.0.1", 26380}));
  EXPECT_EQ((*l)[1], (HostPort{"redis-s2", 26379}));
  EXPECT_EQ((*l)[2], (HostPort{"::1", 5000}));
  EXPECT_EQ((*l)[3], (HostPort{"fe80::1", 26379}));
  EXPECT_EQ(to_string((*l)[2]), "[::1]:5000");
  EXPECT_EQ(to_string((*l)[0]), "10.0.0.1:26380");
  for (const char* bad : {"", ",", "a:1,,b:2", "a:0", "a:65536", "a:", "a:x", "::1:26379", "[::1", "[::1]5000",
                          "[]:1", "a b:1", "a/b:1", "[zz]:1", "a:1:2"}) {
    why.clear();
    EXPECT_FALSE(parse_host_ports(bad, kSentinelPort, &why)) << bad;
    EXPECT_FALSE(why.empty()) << bad;
  }
  EXPECT_TRUE(valid_master_name("mymaster"));
  EXPECT_TRUE(valid_master_name("iotgate-main.1"));
  for (const char* bad : {"", "a b", "a/b", "a,b", "a@b", "tab\there"}) EXPECT_FALSE(valid_master_name(bad)) << bad;
  EXPECT_FALSE(valid_master_name(std::string(129, 'm')));
}

TEST(SentinelOptions, PluginOptions) {
  auto parsed = parse_config({{"redis_sentinels", "10.0.0.1:26379,10.0.0.2"},
                              {"redis_master_name", "main"},
                              {"redis_sentinel_password", "s3cret"}});
  ASSERT_TRUE(std::holds_alternative<Config>(parsed)) << std::get<std::string>(parsed);
  const Config& c = std::get<Config>(parsed);
  ASSERT_EQ(c.redis_sentinels.size(), 2u);
  EXPECT_EQ(c.redis_sentinels[1], (HostPort{"10.0.0.2", 26379}));
  EXPECT_EQ(c.redis_master_name, "main");
  EXPECT_EQ(c.redis_sentinel_password, "s3cret");
  EXPECT_EQ(describe_redis(c), "sentinel master main via 10.0.0.1:26379,10.0.0.2:26379");
  // Without them: redis_host / redis_port, as before.
  Config plain = std::get<Config>(parse_config({}));
  EXPECT_TRUE(plain.redis_sentinels.empty());
  EXPECT_EQ(describe_redis(plain), "127.0.0.1:6379");

  auto error = [](std::vector<std::pair<std::string, std::string>> opts) {
    auto r = parse_config(opts);
    return std::holds_alternative<std::string>(r) ? std::get<std::string>(r) : std::string("accepted");
  };
  EXPECT_EQ(error({{"redis_sentinels", "10.0.0.1"}}),
            "plugin_opt_redis_sentinels needs plugin_opt_redis_master_name (the name the sentinels monitor)");
  EXPECT_EQ(error({{"redis_master_name", "main"}}), "plugin_opt_redis_master_name needs plugin_opt_redis_sentinels");
  EXPECT_EQ(error({{"redis_sentinels", "10.0.0.1:99999"}, {"redis_master_name", "main"}}).rfind(
                "plugin_opt_redis_sentinels must be a list HOST:PORT", 0),
            0u);
  EXPECT_EQ(error({{"redis_sentinels", "10.0.0.1"}, {"redis_master_name", "a b"}}).rfind(
                "plugin_opt_redis_master_name must be", 0),
            0u);
  EXPECT_EQ(error({{"redis_tls", "true"}}), "unknown option plugin_opt_redis_tls");
}

// Each sentinel in turn: one that is down, one that names a server that is down, one that names a replica (ROLE) and
// one that does not know the master are passed over for the one that names a primary.
TEST(SentinelResolver, AsksEachSentinelInTurnAndChecksTheRole) {
  FakeServer replica(redis_with_role("slave"));
  FakeServer primary(redis_with_role("master"));
  FakeServer names_dead(sentinel_naming(kNowhere));
  FakeServer names_replica(sentinel_naming(replica.at()));
  FakeServer names_primary(sentinel_naming(primary.at()));
  Config config = sentinel_config({kNowhere, names_dead.at(), names_replica.at(), names_primary.at()});
  RedisStore store(config, "iotgate-test");
  ASSERT_TRUE(store.connect()) << store.last_error();
  EXPECT_EQ(store.address(), primary.at());
  EXPECT_EQ(replica.commands(), (std::vector<std::string>{"CLIENT SETNAME iotgate-test", "ROLE"}));
  // The primary got the client name and the role check.
  EXPECT_EQ(primary.commands(), (std::vector<std::string>{"CLIENT SETNAME iotgate-test", "ROLE"}));
  EXPECT_EQ(names_primary.commands(), std::vector<std::string>{"SENTINEL get-master-addr-by-name main"});

  // The next connection asks the sentinel that answered first.
  store.disconnect();
  ASSERT_TRUE(store.connect());
  EXPECT_EQ(names_dead.commands().size(), 1u);
  EXPECT_EQ(names_primary.commands().size(), 2u);
}

TEST(SentinelResolver, SaysWhatEachSentinelSaidWhenNoneLeadsToAPrimary) {
  FakeServer replica(redis_with_role("slave"));
  FakeServer names_replica(sentinel_naming(replica.at()));
  FakeServer unknown(sentinel_naming(kNowhere));
  Config config = sentinel_config({kNowhere, names_replica.at()});
  RedisStore store(config);
  EXPECT_FALSE(store.connect());
  EXPECT_FALSE(store.connected());
  const std::string& e = store.last_error();
  EXPECT_NE(e.find("no sentinel led to a primary for master main"), std::string::npos) << e;
  EXPECT_NE(e.find("sentinel 127.0.0.1:1: Connection refused"), std::string::npos) << e;
  EXPECT_NE(e.find("not a primary (ROLE slave)"), std::string::npos) << e;

  SentinelResolver other({unknown.at()}, "other");
  std::string error;
  EXPECT_FALSE(other.resolve(std::chrono::seconds(1), [](const HostPort&, std::string*) { return true; }, &error));
  EXPECT_NE(error.find("knows no master named other"), std::string::npos) << error;
}

// A sentinel with a password: the one configured is sent when it asks (NOAUTH), and never echoed.
TEST(SentinelResolver, SendsThePasswordToASentinelThatAsks) {
  FakeServer primary(redis_with_role("master"));
  FakeServer locked(sentinel_naming(primary.at(), "s3cret"));
  Config config = sentinel_config({locked.at()});
  RedisStore without(config);
  EXPECT_FALSE(without.connect());
  EXPECT_NE(without.last_error().find("NOAUTH"), std::string::npos) << without.last_error();
  config.redis_sentinel_password = "wrong";
  RedisStore wrong(config);
  EXPECT_FALSE(wrong.connect());
  EXPECT_NE(wrong.last_error().find("AUTH refused"), std::string::npos) << wrong.last_error();
  EXPECT_EQ(wrong.last_error().find("wrong"), std::string::npos) << wrong.last_error();
  config.redis_sentinel_password = "s3cret";
  RedisStore with(config);
  ASSERT_TRUE(with.connect()) << with.last_error();
  EXPECT_EQ(with.address(), primary.at());
}

// A failover that leaves the old primary running: it answers (and takes writes) until the sentinels demote it, so
// the store asks them whether they still name it, over one connection kept open.
TEST(SentinelResolver, NoticesWhenTheSentinelsNameAnotherPrimary) {
  FakeServer old_primary(redis_with_role("master"));
  FakeServer new_primary(redis_with_role("master"));
  std::mutex mu;
  HostPort named = old_primary.at();
  FakeServer sentinel([&](const std::vector<std::string>& argv) -> std::string {
    std::lock_guard lock(mu);
    return sentinel_naming(named)(argv);
  });
  RedisStore store(sentinel_config({sentinel.at()}));
  EXPECT_FALSE(store.primary_moved());  // not connected
  ASSERT_TRUE(store.connect());
  EXPECT_FALSE(store.primary_moved());
  EXPECT_FALSE(store.primary_moved());
  {
    std::lock_guard lock(mu);
    named = new_primary.at();
  }
  EXPECT_TRUE(store.primary_moved());
  EXPECT_EQ(sentinel.commands().size(), 4u);  // the resolve, then three checks
  ASSERT_TRUE(store.connect());
  EXPECT_EQ(store.address(), new_primary.at());
  EXPECT_FALSE(store.primary_moved());
  // Without sentinels there is nothing to ask.
  FakeServer plain(redis_with_role("master"));
  Config config;
  config.redis_port = plain.port();
  RedisStore direct(config);
  ASSERT_TRUE(direct.connect());
  EXPECT_FALSE(direct.primary_moved());
  EXPECT_TRUE(plain.commands().empty());
}

// A primary that cannot reach the replicas min-replicas-to-write asks for (NOREPLICAS, as an old primary cut off by
// a failover) refuses writes for a while: Redis away, the write held, not a refusal that drops it.
TEST(SentinelResolver, NoReplicasCountsAsUnavailable) {
  FakeServer lonely([](const std::vector<std::string>& argv) -> std::string {
    if (argv[0] == "HSET") return "-NOREPLICAS Not enough good replicas to write.\r\n";
    return "+OK\r\n";
  });
  Config config;
  config.redis_port = lonely.port();
  RedisStore store(config);
  ASSERT_TRUE(store.connect());
  StoreResult r = store.touch_many({iotgate::test::held_logout_time()});
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.error, "unavailable");
  EXPECT_FALSE(store.connected());
  EXPECT_NE(store.last_error().find("NOREPLICAS"), std::string::npos) << store.last_error();
}

// A primary demoted by a failover answers READONLY: the write is held (Redis away), and the next connection asks the
// sentinels again, which name the new primary: the old address is not redialled.
TEST(SentinelResolver, AReadonlyPrimaryIsLeftForTheOneTheSentinelsNameNow) {
  FakeServer demoted([](const std::vector<std::string>& argv) -> std::string {
    if (argv[0] == "ROLE") return "*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n";
    if (argv[0] == "HSET") return "-READONLY You can't write against a read only replica.\r\n";
    return "+OK\r\n";
  });
  FakeServer promoted(redis_with_role("master"));
  std::mutex mu;
  HostPort named = demoted.at();
  FakeServer sentinel([&](const std::vector<std::string>& argv) -> std::string {
    std::lock_guard lock(mu);
    return sentinel_naming(named)(argv);
  });
  RedisStore store(sentinel_config({sentinel.at()}));
  ASSERT_TRUE(store.connect());
  EXPECT_EQ(store.address(), demoted.at());
  StoreResult r = store.touch_many({iotgate::test::held_logout_time()});
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.error, "unavailable");
  EXPECT_FALSE(store.connected());
  {
    std::lock_guard lock(mu);
    named = promoted.at();
  }
  ASSERT_TRUE(store.connect());
  EXPECT_EQ(store.address(), promoted.at());
  EXPECT_TRUE(store.touch_many({iotgate::test::held_logout_time()}).ok);
  EXPECT_EQ(promoted.commands().back(), "HSET iotgate:last_offline:P1 D1 1700000000");
}
