#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <thread>

#include "iotgate/store.h"
#include "store_jobs.h"

using namespace iotgate;
using iotgate::test::held_logout_time;

namespace {
// A stand-in for a Redis that refuses every command with one error: one that has just restarted and is loading its
// AOF (LOADING), or a demoted primary (READONLY).
class RefusingRedis {
 public:
  explicit RefusingRedis(std::string error = "LOADING Redis is loading the dataset in memory") {
    listener_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    listen(listener_, 4);
    socklen_t len = sizeof addr;
    getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this, error] {
      int conn = accept(listener_, nullptr, nullptr);
      if (conn < 0) return;
      char buf[4096];
      const std::string loading = "-" + error + "\r\n";
      while (read(conn, buf, sizeof buf) > 0) {
        ++commands_;
        if (write(conn, loading.data(), loading.size()) < 0) break;
      }
      close(conn);
    });
  }
  ~RefusingRedis() {
    shutdown(listener_, SHUT_RDWR);
    close(listener_);
    thread_.join();
  }
  int port() const { return port_; }
  int commands() const { return commands_; }

 private:
  int listener_ = -1;
  int port_ = 0;
  std::atomic<int> commands_{0};
  std::thread thread_;
};

}  // namespace

// Found by CI: a login time held while Redis was down was dropped as "refused" when the first attempt after the
// restart met Redis still loading its data. It must count as Redis being away: not connected, write kept.
TEST(RedisStore, LoadingRedisCountsAsUnavailableNotAsARefusedWrite) {
  RefusingRedis redis;
  Config config;
  config.redis_port = redis.port();
  config.redis_timeout_ms = 2000;
  RedisStore store(config);
  ASSERT_TRUE(store.connect());
  StoreResult result = store.touch_many({held_logout_time()});
  EXPECT_FALSE(result.ok);
  EXPECT_EQ(result.error, "unavailable");
  EXPECT_FALSE(store.connected());  // the writer then holds the write and retries after its backoff
  EXPECT_NE(store.last_error().find("LOADING"), std::string::npos) << store.last_error();
  EXPECT_EQ(redis.commands(), 1);
}

// A failover demotes the old primary: every write gets READONLY. That is Redis being away (the write is held and
// retried), not a refusal that drops durable writes such as login/logout times.
TEST(RedisStore, ADemotedPrimaryCountsAsUnavailableNotAsARefusedWrite) {
  for (const char* error : {"READONLY You can't write against a read only replica.",
                            "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'."}) {
    RefusingRedis redis(error);
    Config config;
    config.redis_port = redis.port();
    RedisStore store(config);
    ASSERT_TRUE(store.connect());
    StoreResult result = store.touch_many({held_logout_time()});
    EXPECT_FALSE(result.ok);
    EXPECT_EQ(result.error, "unavailable");
    EXPECT_FALSE(store.connected());
    EXPECT_NE(store.last_error().find(std::string(error).substr(0, 8)), std::string::npos) << store.last_error();
  }
}
