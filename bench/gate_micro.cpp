// iotgate_gate_micro: what the plugin's two calls per delivered message cost in the core alone, in a warm loop
// (no broker, no network, caches hot): the publisher's write check (Gate::on_publish) and the subscriber's read
// ACL, for 1,000 Lierda V2 devices publishing opaque uplinks and one service account reading /sys/#. A lower
// bound for the broker: bench/run.sh measures the real thing; perf shows what cache misses add there.
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "iotgate/crypto.h"
#include "iotgate/gate.h"

using namespace iotgate;

namespace {
struct NoEffects : Effects {
  void publish_to_client(const std::string&, const std::string&, const std::string&, int) override {}
  void publish(const std::string&, const std::string&, int) override {}
  void clear_retained(const std::string&) override {}
  void kick(const std::string&) override {}
  void submit(StoreJob) override {}
};
constexpr int kDevices = 1000;
constexpr int kCalls = 3000000;
constexpr const char* kKey = "0123456789ABCDEF0123456789ABCDEF";
constexpr const char* kSecret = "00112233445566778899AABBCCDDEEFF";
}  // namespace

int main() {
  Log log([](LogLevel, const std::string&) {});
  NoEffects effects;
  int64_t now = 1700000000;
  Gate gate(Config{}, log, effects, [&] { return now; });
  auto registry = std::make_unique<Registry>();
  Product product;
  product.id = "BE5C0D01";
  product.protocol = Protocol::lierda;
  product.openid = "BE5C0001";
  product.product_key = kKey;
  product.auth_type = 2;
  registry->put_product(product);
  std::vector<std::string> euis, client_ids, usernames, topics;
  for (int i = 0; i < kDevices; ++i) {
    char eui[32];
    std::snprintf(eui, sizeof eui, "BENCH%08d", i);
    Device d;
    d.product = product.id;
    d.id = eui;
    d.secret = kSecret;
    registry->put_device(d);
    euis.push_back(eui);
    client_ids.push_back("V2_BE5C0D01." + euis.back() + "_0_1700000000");
    usernames.push_back("BE5C0001-BE5C0D01-" + euis.back());
    topics.push_back("/sys/BE5C0001/BE5C0D01/" + euis.back() + "/uplink");
  }
  Account account;
  account.name = "benchsub";
  account.password_hash = parse_pbkdf2_hash(make_pbkdf2_hash("benchpass"));
  account.rules = {*parse_account_rule("read /sys/#")};
  registry->put_account(account);
  gate.on_snapshot(Snapshot{std::move(registry), {}, {}});

  std::vector<int> connections(kDevices + 1);  // their addresses stand in for the broker's client objects
  for (int i = 0; i < kDevices; ++i) {
    ClientInfo c{client_ids[i], std::string_view(usernames[i]), "127.0.0.1", &connections[i]};
    auto password = lierda_v2_password(kSecret, product.id, euis[i], kKey, std::nullopt);
    if (!password || !gate.authenticate(c, std::string_view(*password))) {
      std::fprintf(stderr, "login of %s refused\n", euis[i].c_str());
      return 1;
    }
  }
  const std::string subscriber = "bench-sub";
  ClientInfo sub{subscriber, std::string_view("benchsub"), "127.0.0.1", &connections[kDevices]};
  if (!gate.authenticate(sub, std::string_view("benchpass"))) {
    std::fprintf(stderr, "login of the subscriber refused\n");
    return 1;
  }

  const std::string_view payload("0123456789012345678901234567890123456789012345678901234567890123");
  long passed = 0;
  auto time_ns = [&](auto&& call) {
    auto start = std::chrono::steady_clock::now();
    for (int n = 0; n < kCalls; ++n) passed += call(n % kDevices);
    return std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - start).count() / kCalls;
  };
  double publish = time_ns([&](int i) {
    return gate.on_publish(client_ids[i].c_str(), &connections[i], usernames[i].c_str(), topics[i].c_str(), payload) ==
           Verdict::pass;
  });
  double read_acl = time_ns([&](int i) {
    return gate.check_acl(subscriber.c_str(), &connections[kDevices], "benchsub", Access::read, topics[i].c_str());
  });
  if (passed != 2L * kCalls) {
    std::fprintf(stderr, "%ld of %d calls refused\n", 2L * kCalls - passed, 2 * kCalls);
    return 1;
  }
  std::printf("{\"mode\":\"gate-micro\",\"devices\":%d,\"calls\":%d,\"publish_ns\":%.1f,\"read_acl_ns\":%.1f,"
              "\"per_message_ns\":%.1f}\n",
              kDevices, kCalls, publish, read_acl, publish + read_acl);
  return 0;
}
