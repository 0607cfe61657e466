#include <gtest/gtest.h>

#include <rapidjson/document.h>

#include "iotgate/crypto.h"
#include "iotgate/fleet.h"
#include "iotgate/gate.h"

using namespace iotgate;

namespace {
constexpr const char* kPid = "AA30C505";
constexpr const char* kOpenid = "7ED01E2A";
constexpr const char* kEui = "20MQTTJ000121";
constexpr const char* kKey = "DB6FACEF35BEBA0517712F0E4BE32936";
constexpr const char* kSecret = "326086233FAB8A96566796551EB1DFF8";
constexpr const char* kOpPassHash =
    "$7$101$P1hOONOJYF3fE6+D$HKKEKSqUBCkMHJ/RkSA4z9hcjwcUFCKHvyqf97jML4yptOGI8dVSioW3CTajP41hTLujHH7Y80NuKCQBI9lMog==";

struct Published {
  std::string client_id, topic, payload;
};

struct FakeEffects : Effects {
  std::vector<Published> published;
  std::vector<std::string> kicks;
  std::vector<StoreJob> jobs;
  void publish_to_client(const std::string& c, const std::string& t, const std::string& p, int) override {
    published.push_back({c, t, p});
  }
  void publish(const std::string& t, const std::string& p, int) override { published.push_back({"", t, p}); }
  std::vector<std::string> cleared;
  void clear_retained(const std::string& t) override { cleared.push_back(t); }
  void kick(const std::string& c) override { kicks.push_back(c); }
  // Client-id claims of sessions without a device (the other brokers' takeover rule), kept apart from the writes
  // the tests count.
  std::vector<StoreJob> claims;
  void submit(StoreJob job) override {
    if (job.type == StoreJob::Type::touch_device && job.touch.product.empty()) claims.push_back(std::move(job));
    else jobs.push_back(std::move(job));
  }
};

// Another broker's fleet announcement (fleet.h): claims (ms, client id) and logout times (s, "product:device").
Command fleet_event(const std::string& broker, const std::vector<std::pair<int64_t, std::string>>& claims,
                    const std::vector<std::pair<int64_t, std::string>>& offline) {
  Fields f{{"kind", "fleet"}, {"broker", broker}};
  for (const auto& [at, cid] : claims) fleet::append(f["claims"], at, cid);
  for (const auto& [off, device] : offline) fleet::append(f["offline"], off, device);
  return Command{std::move(f)};
}

class GateTest : public ::testing::Test {
 protected:
  GateTest() : log_([this](LogLevel, const std::string& s) { lines_.push_back(s); }, LogLevel::debug, 1000, 10),
               gate_(Config{}, log_, effects_, [this] { return now_; }) {}

  void SetUp() override {
    auto reg = std::make_unique<Registry>();
    Product lierda;
    lierda.id = kPid;
    lierda.protocol = Protocol::lierda;
    lierda.openid = kOpenid;
    lierda.product_key = kKey;
    lierda.auth_type = 1;
    reg->put_product(lierda);
    Product free = lierda;
    free.id = "BB30C505";
    free.auth_type = 0;
    reg->put_product(free);
    Device d;
    d.product = kPid;
    d.id = kEui;
    d.secret = kSecret;
    reg->put_device(d);
    Product krt;
    krt.id = "KP1";
    krt.protocol = Protocol::krt;
    krt.product_secret = "prodsecret";
    krt.dynamic_register = true;
    krt.auto_create = true;
    krt.limit = 1;
    reg->put_product(krt);
    Device kd;
    kd.product = "KP1";
    kd.id = "KD1";
    kd.secret = "devsecret1";
    reg->put_device(kd);
    Product emu;
    emu.id = "PK1";
    emu.protocol = Protocol::emu;
    emu.emu_namespace = "wudun";
    reg->put_product(emu);
    Device gw;
    gw.product = "PK1";
    gw.id = "gw1";
    gw.secret_hash = std::make_shared<const Pbkdf2Hash>(*parse_pbkdf2_hash(kOpPassHash));
    reg->put_device(gw);
    Account op;
    op.name = "operator";
    op.password_hash = parse_pbkdf2_hash(kOpPassHash);
    op.rules = {*parse_account_rule("read /sys/#")};
    reg->put_account(op);
    gate_.on_snapshot(Snapshot{std::move(reg), {}, {}});
    lines_.clear();
  }

  bool login(const std::string& cid, std::optional<std::string> user, std::optional<std::string> pw,
             const void* handle = nullptr) {
    ClientInfo c;
    c.client_id = cid;
    if (user) c.username = *user;
    c.handle = handle ? handle : &handles_[cid];
    usernames_[cid] = user;
    std::optional<std::string_view> p;
    if (pw) p = *pw;
    return gate_.authenticate(c, p);
  }
  // A PUBLISH as the broker's WRITE check passes it: by default from the connection `cid` last logged in with.
  Verdict publish(const std::string& cid, std::string_view topic, std::string_view payload,
                  const void* handle = nullptr) {
    const std::optional<std::string>& user = usernames_[cid];
    return gate_.on_publish(cid.c_str(), handle ? handle : &handles_[cid], user ? user->c_str() : nullptr, topic,
                            payload);
  }
  std::string v2_cid(int type, int64_t ts) {
    return std::string("V2_") + kPid + "." + kEui + "_" + std::to_string(type) + "_" + std::to_string(ts);
  }
  std::string v2_user() { return std::string(kOpenid) + "-" + kPid + "-" + kEui; }
  std::string v2_pw(std::optional<int64_t> ts) { return *lierda_v2_password(kSecret, kPid, kEui, kKey, ts); }
  // A load from Redis, parsed, that holds the V2 product and device with nothing but its secret.
  std::unique_ptr<Registry> load_of_only_the_v2_device() {
    auto reg = std::make_unique<Registry>();
    reg->put_product(*gate_.registry().product(kPid));
    Device d;
    d.product = kPid;
    d.id = kEui;
    d.secret = kSecret;
    gate_.carry_over(d);  // as StoreProcess does with each device of a load
    reg->put_device(d);
    return reg;
  }
  void reload_with_only_the_v2_device() { gate_.on_snapshot(Snapshot{load_of_only_the_v2_device(), {}, {}}); }
  bool logged(const std::string& needle) {
    for (const auto& l : lines_)
      if (l.find(needle) != std::string::npos) return true;
    return false;
  }

  int64_t now_ = 1700000000;
  std::vector<std::string> lines_;
  Log log_;
  FakeEffects effects_;
  Gate gate_;
  std::map<std::string, int> handles_;
  std::map<std::string, std::optional<std::string>> usernames_;
  std::string v2_user_;
};
}  // namespace

TEST_F(GateTest, RefusesEverythingBeforeTheFirstLoad) {
  FakeEffects fx;
  Gate fresh(Config{}, log_, fx, [] { return int64_t{0}; });
  ClientInfo c{"V2_x", std::string_view("u"), "", nullptr};
  EXPECT_FALSE(fresh.authenticate(c, std::string_view("p")));
  EXPECT_TRUE(logged("not loaded"));
}

TEST_F(GateTest, LierdaV2Type0SeedVector) {
  EXPECT_TRUE(login(v2_cid(0, 1675404867), v2_user(), v2_pw(std::nullopt)));
  ASSERT_TRUE(gate_.session(v2_cid(0, 1675404867)));
  EXPECT_EQ(gate_.session(v2_cid(0, 1675404867))->prefix, "/sys/7ED01E2A/AA30C505/20MQTTJ000121/");
  ASSERT_EQ(effects_.jobs.size(), 1u);
  EXPECT_EQ(effects_.jobs[0].touch.last_online, now_);
  EXPECT_TRUE(effects_.jobs[0].durable);
}

TEST_F(GateTest, LierdaV2Refusals) {
  std::string pw0 = v2_pw(std::nullopt);
  EXPECT_FALSE(login(v2_cid(0, 1), v2_user(), "5EB6"));
  EXPECT_TRUE(logged("wrong V2 password"));
  EXPECT_FALSE(login(v2_cid(0, 1), "7ED01E2A-AA30C505-OTHER00001", pw0));
  EXPECT_TRUE(logged("username is not"));
  EXPECT_FALSE(login("V2_AA30C505.20MQTTJ000121_2_1", v2_user(), pw0));
  EXPECT_FALSE(login("V2_AA30C505.20MQTTJ000121_0_x", v2_user(), pw0));
  EXPECT_FALSE(login("V2_AA30C50520MQTTJ000121_0_1", v2_user(), pw0));
  EXPECT_TRUE(logged("malformed V2 client id"));
  EXPECT_FALSE(login("V2_AA30C505.20MQ+TJ000121_0_1", "7ED01E2A-AA30C505-20MQ+TJ000121", pw0));
  EXPECT_TRUE(logged("invalid NodeEui"));
  EXPECT_FALSE(login("V2_CC30C505.20MQTTJ000121_0_1", "7ED01E2A-CC30C505-20MQTTJ000121", pw0));
  EXPECT_TRUE(logged("unknown product"));
  EXPECT_FALSE(login("V2_AA30C505.20MQTTJ000199_0_1", "7ED01E2A-AA30C505-20MQTTJ000199", pw0));
  EXPECT_TRUE(logged("unknown device"));
  EXPECT_FALSE(login(v2_cid(0, 1), v2_user(), std::nullopt));
  EXPECT_FALSE(login(v2_cid(0, 1), std::nullopt, pw0));
  for (const auto& l : lines_) EXPECT_EQ(l.find(kSecret), std::string::npos) << "secret leaked: " << l;
  for (const auto& l : lines_) EXPECT_EQ(l.find(pw0), std::string::npos) << "password leaked: " << l;
}

TEST_F(GateTest, LierdaV2Type1FreshnessAndReplay) {
  int64_t ts = now_ - 30;
  EXPECT_TRUE(login(v2_cid(1, ts), v2_user(), v2_pw(ts)));
  gate_.on_disconnect(v2_cid(1, ts), &handles_[v2_cid(1, ts)]);
  EXPECT_EQ(gate_.registry().device(kPid, kEui)->last_offline, now_);
  // The captured password cannot be replayed once the device has gone offline.
  EXPECT_FALSE(login(v2_cid(1, ts), v2_user(), v2_pw(ts)));
  EXPECT_TRUE(logged("not after the device's last offline time"));
  // The same second as the disconnect is not after it either.
  EXPECT_FALSE(login(v2_cid(1, now_), v2_user(), v2_pw(now_)));
  now_ += 1;
  EXPECT_TRUE(login(v2_cid(1, now_), v2_user(), v2_pw(now_)));
  // Future timestamps beyond the skew are refused; within it accepted.
  EXPECT_FALSE(login(v2_cid(1, now_ + 61), v2_user(), v2_pw(now_ + 61)));
  EXPECT_TRUE(logged("in the future"));
  EXPECT_TRUE(login(v2_cid(1, now_ + 60), v2_user(), v2_pw(now_ + 60)));
  // A type 1 password does not pass as type 0 and vice versa.
  EXPECT_FALSE(login(v2_cid(0, now_), v2_user(), v2_pw(now_)));
  EXPECT_FALSE(login(v2_cid(1, now_), v2_user(), v2_pw(std::nullopt)));
}

TEST_F(GateTest, TakeoverDisconnectOfOldConnectionKeepsNewSession) {
  int old_conn = 0, new_conn = 0;
  std::string cid = v2_cid(0, 1);
  EXPECT_TRUE(login(cid, v2_user(), v2_pw(std::nullopt), &old_conn));
  EXPECT_TRUE(login(cid, v2_user(), v2_pw(std::nullopt), &new_conn));
  gate_.on_disconnect(cid, &old_conn);
  EXPECT_TRUE(gate_.session(cid));
  gate_.on_disconnect(cid, &new_conn);
  EXPECT_FALSE(gate_.session(cid));
}

TEST_F(GateTest, LierdaAuthLoginAndRefusals) {
  std::string cid = std::string(kPid) + "-" + kEui, user = std::string("AUTH-") + kOpenid + "-" + kPid;
  EXPECT_TRUE(login(cid, user, kKey));
  EXPECT_EQ(gate_.session(cid)->kind, SessionKind::lierda_auth);
  EXPECT_TRUE(effects_.jobs.empty());  // the AUTH session does not count as the device being online
  EXPECT_FALSE(login(cid, user, "DB6FACEF35BEBA0517712F0E4BE32937"));
  EXPECT_TRUE(logged("wrong ProductKey"));
  EXPECT_FALSE(login(cid, "AUTH-7ED01E2B-AA30C505", kKey));
  EXPECT_TRUE(logged("OpenID does not own"));
  EXPECT_FALSE(login("AA30C505-ab", user, kKey));
  EXPECT_FALSE(login("BB30C505-20MQTTJ000121", user, kKey));
  EXPECT_TRUE(logged("client id is not"));
  EXPECT_FALSE(login(cid, "AUTH-7ED01E2A", kKey));
  EXPECT_TRUE(logged("malformed AUTH username"));
}

TEST_F(GateTest, AuthExchangeAnswersFromMemoryWithTheSecret) {
  std::string cid = std::string(kPid) + "-" + kEui;
  ASSERT_TRUE(login(cid, std::string("AUTH-") + kOpenid + "-" + kPid, kKey));
  std::string req = R"({"MessageId":1231,"HeaderCtrl":1,"Payload":{"OpenID":"7ED01E2A","ProductID":"AA30C505","NodeEui":"20MQTTJ000121","Type":1},"Version":"2.0"})";
  EXPECT_EQ(publish(cid, "/sys/device/auth", req), Verdict::pass);
  EXPECT_TRUE(effects_.published.empty());  // a secret goes out from the tick (see Gate::replies_due_)
  gate_.tick();
  ASSERT_EQ(effects_.published.size(), 1u);
  EXPECT_EQ(effects_.published[0].client_id, cid);
  EXPECT_EQ(effects_.published[0].topic, "/sys/7ED01E2A/AA30C505/20MQTTJ000121/downlink");
  rapidjson::Document doc;
  doc.Parse(effects_.published[0].payload.c_str());
  EXPECT_EQ(doc["MessageId"].GetInt(), 1231);
  EXPECT_EQ(doc["HeaderCtrl"].GetInt(), 1);
  EXPECT_EQ(doc["Payload"]["Code"].GetInt(), 0);
  EXPECT_STREQ(doc["Payload"]["DeviceSecret"].GetString(), kSecret);
  for (const auto& l : lines_) EXPECT_EQ(l.find(kSecret), std::string::npos) << "secret leaked: " << l;
}

TEST_F(GateTest, AuthExchangeErrorCodes) {
  std::string cid = std::string(kPid) + "-" + kEui;
  ASSERT_TRUE(login(cid, std::string("AUTH-") + kOpenid + "-" + kPid, kKey));
  auto code_for = [&](const std::string& req) {
    effects_.published.clear();
    publish(cid, "/sys/device/auth", req);
    gate_.tick();
    if (effects_.published.size() != 1) return -1;
    rapidjson::Document doc;
    doc.Parse(effects_.published[0].payload.c_str());
    return doc["Payload"]["Code"].GetInt();
  };
  std::string ok_payload = R"("Payload":{"OpenID":"7ED01E2A","ProductID":"AA30C505","NodeEui":"20MQTTJ000121","Type":1})";
  EXPECT_EQ(code_for(R"({"MessageId":"7","HeaderCtrl":1,)" + ok_payload + R"(,"Version":"1.0"})"), 6);
  EXPECT_EQ(code_for(R"({"MessageId":"7","HeaderCtrl":1,"Payload":{"OpenID":"7ED01E2A","ProductID":"AA30C505","NodeEui":"20MQTTJ000121","Type":0},"Version":"2.0"})"), 5);
  EXPECT_EQ(code_for(R"({"MessageId":"7","HeaderCtrl":1,"Payload":{"OpenID":"7ED01E2A","ProductID":"AA30C505","NodeEui":"OTHERDEVICE1","Type":1},"Version":"2.0"})"), 4);
  EXPECT_EQ(code_for(R"({"MessageId":"7","HeaderCtrl":1,"Payload":"x","Version":"2.0"})"), 4);
  // MessageId is echoed in the JSON type it came in.
  code_for(R"({"MessageId":"7","HeaderCtrl":1,)" + ok_payload + R"(,"Version":"2.0"})");
  EXPECT_NE(effects_.published[0].payload.find(R"("MessageId":"7")"), std::string::npos);
  // Not JSON, not an object, wrong HeaderCtrl: ignored with a log line, no reply, no crash.
  EXPECT_EQ(code_for("{not json"), -1);
  EXPECT_EQ(code_for("[1,2]"), -1);
  EXPECT_EQ(code_for(R"({"HeaderCtrl":"x"})"), -1);
  EXPECT_TRUE(logged("not a JSON object"));
  EXPECT_EQ(code_for(std::string(70000, '{')), -1);
  EXPECT_TRUE(logged("larger than max_payload"));
}

TEST_F(GateTest, AuthExchangeCreatesType0DeviceOnlyAfterTheStoreConfirms) {
  std::string cid = "BB30C505-NEWDEV01";
  ASSERT_TRUE(login(cid, "AUTH-7ED01E2A-BB30C505", kKey));
  publish(cid, "/sys/device/auth",
                   R"({"MessageId":5,"HeaderCtrl":1,"Payload":{"OpenID":"7ED01E2A","ProductID":"BB30C505","NodeEui":"NEWDEV01","Type":0},"Version":"2.0"})");
  EXPECT_TRUE(effects_.published.empty());  // nothing is told before the secret is stored
  ASSERT_EQ(effects_.jobs.size(), 1u);
  const StoreJob& job = effects_.jobs[0];
  EXPECT_EQ(job.type, StoreJob::Type::lierda_issue);
  EXPECT_TRUE(job.create);
  EXPECT_FALSE(job.durable);
  // The store keeps an existing secret: the reply carries what the store returned.
  gate_.on_result(StoreResult{job.token, true, "", Fields{{"enabled", "1"}, {"secret", "00112233445566778899AABBCCDDEEFF"}}});
  ASSERT_EQ(effects_.published.size(), 1u);
  EXPECT_NE(effects_.published[0].payload.find("00112233445566778899AABBCCDDEEFF"), std::string::npos);
  EXPECT_TRUE(gate_.registry().device("BB30C505", "NEWDEV01"));
}

TEST_F(GateTest, AuthExchangeAnswersBusyWhenTheStoreIsDown) {
  std::string cid = "BB30C505-NEWDEV02";
  ASSERT_TRUE(login(cid, "AUTH-7ED01E2A-BB30C505", kKey));
  publish(cid, "/sys/device/auth",
                   R"({"MessageId":5,"HeaderCtrl":1,"Payload":{"OpenID":"7ED01E2A","ProductID":"BB30C505","NodeEui":"NEWDEV02","Type":0},"Version":"2.0"})");
  ASSERT_EQ(effects_.jobs.size(), 1u);
  gate_.on_result(StoreResult{effects_.jobs[0].token, false, "unavailable", std::nullopt});
  ASSERT_EQ(effects_.published.size(), 1u);
  EXPECT_NE(effects_.published[0].payload.find(R"("Code":1)"), std::string::npos);
  EXPECT_EQ(effects_.published[0].payload.find("DeviceSecret"), std::string::npos);
  EXPECT_FALSE(gate_.registry().device("BB30C505", "NEWDEV02"));
}

TEST_F(GateTest, KrtDeviceAndRegistrationLogins) {
  EXPECT_TRUE(login("KP1", "KD1", "devsecret1"));
  EXPECT_EQ(gate_.session("KP1")->kind, SessionKind::krt_device);
  EXPECT_TRUE(gate_.registry().device("KP1", "KD1")->activated);  // a device login activates
  EXPECT_TRUE(login("KP1.KD1", "KD1", "devsecret1"));
  EXPECT_FALSE(login("KP1.KD2", "KD1", "devsecret1"));
  EXPECT_TRUE(logged("names another device"));
  EXPECT_FALSE(login("KP1", "KD1", "wrong"));
  EXPECT_TRUE(logged("wrong secret"));
  // Registration is refused once activated.
  EXPECT_FALSE(login("KP1", "KD1", "prodsecret"));
  EXPECT_TRUE(logged("already activated"));
  // Unknown device: auto-creation (limit 1).
  EXPECT_TRUE(login("KP1.NEW1", "NEW1", "prodsecret"));
  EXPECT_EQ(gate_.session("KP1.NEW1")->kind, SessionKind::krt_register);
  EXPECT_FALSE(login("KP1.NEW1", "NEW1", "devsecret1"));
}

TEST_F(GateTest, KrtRegistrationExchange) {
  ASSERT_TRUE(login("KP1.NEW1", "NEW1", "prodsecret"));
  publish("KP1.NEW1", "/sys/KP1/NEW1/thing/register/post",
          R"({"CMD":20,"ID":"abc","PRODUCT_ID":"KP1","DEVICE_ID":"NEW1"})");
  ASSERT_EQ(effects_.jobs.size(), 1u);
  const StoreJob job = effects_.jobs[0];
  EXPECT_EQ(job.type, StoreJob::Type::krt_issue);
  EXPECT_TRUE(job.create);
  EXPECT_EQ(job.limit, 1);
  gate_.on_result(StoreResult{job.token, true, "",
                              Fields{{"enabled", "1"}, {"origin", "auto"}, {"secret", job.candidate_secret}}});
  ASSERT_EQ(effects_.published.size(), 1u);
  EXPECT_EQ(effects_.published[0].topic, "/sys/KP1/NEW1/thing/register/set");
  EXPECT_NE(effects_.published[0].payload.find(R"("ID":"abc")"), std::string::npos);
  EXPECT_NE(effects_.published[0].payload.find(R"("CODE":0)"), std::string::npos);
  EXPECT_NE(effects_.published[0].payload.find(job.candidate_secret), std::string::npos);
  // A repeated request gets the same secret, from memory.
  publish("KP1.NEW1", "/sys/KP1/NEW1/thing/register/post", R"({"CMD":20,"ID":"abd"})");
  gate_.tick();
  ASSERT_EQ(effects_.published.size(), 2u);
  EXPECT_NE(effects_.published[1].payload.find(job.candidate_secret), std::string::npos);
  // Confirmation activates and closes the registration session.
  publish("KP1.NEW1", "/sys/KP1/NEW1/thing/register/post", R"({"CMD":21,"ID":"abd","BACK":"OK"})");
  EXPECT_TRUE(gate_.registry().device("KP1", "NEW1")->activated);
  ASSERT_EQ(effects_.kicks.size(), 1u);
  EXPECT_EQ(effects_.kicks[0], "KP1.NEW1");
  // After activation: no answer.
  publish("KP1.NEW1", "/sys/KP1/NEW1/thing/register/post", R"({"CMD":20,"ID":"x"})");
  EXPECT_EQ(effects_.published.size(), 2u);
  // Auto-creation limit (1) now reached for another unknown device.
  EXPECT_FALSE(login("KP1.NEW2", "NEW2", "prodsecret"));
  EXPECT_TRUE(logged("auto-creation limit"));
}

// The broker also WRITE-checks what is not a client's PUBLISH: a will, after its sender's DISCONNECT or with the
// replaced connection of a takeover, and a retained message's publisher through a stand-in client. They are judged
// by the ACL like any message, but only a PUBLISH of the connection that logged in is answered.
TEST_F(GateTest, WriteChecksOfWillsAndStandInsAreJudgedButNotAnswered) {
  const std::string cid = "KP1.NEW1", topic = "/sys/KP1/NEW1/thing/register/post";
  const std::string request = R"({"CMD":20,"ID":"w"})";
  int replaced = 0, stand_in = 0;
  ASSERT_TRUE(login(cid, "NEW1", "prodsecret", &replaced));
  ASSERT_TRUE(login(cid, "NEW1", "prodsecret"));  // takeover: `replaced` still carries its will
  EXPECT_EQ(publish(cid, topic, request, &replaced), Verdict::pass);
  EXPECT_EQ(publish(cid, topic, request, &stand_in), Verdict::pass);
  EXPECT_EQ(publish(cid, "/sys/KP1/NEW2/thing/register/post", request, &stand_in), Verdict::drop);
  EXPECT_TRUE(effects_.jobs.empty());
  EXPECT_EQ(publish(cid, topic, request), Verdict::pass);  // the live connection's PUBLISH
  EXPECT_EQ(effects_.jobs.size(), 1u);
  gate_.on_disconnect(cid, &handles_[cid]);
  publish(cid, topic, request);  // its will, judged by the names alone
  EXPECT_EQ(effects_.jobs.size(), 1u);
}

// A session keeps a pointer to its account's rules: it must follow a change of the rules, a reload of the whole
// registry (which frees the old entries; ASan would catch a stale read) and a removal.
TEST_F(GateTest, AccountAclFollowsChangesReloadsAndRemovalOfTheAccount) {
  ASSERT_TRUE(login("operator:1", "operator", "s3cret-pass"));
  auto reads = [&](std::string_view topic) {
    return gate_.check_acl("operator:1", &handles_["operator:1"], "operator", Access::read, topic);
  };
  EXPECT_TRUE(reads("/sys/A/B/C/uplink"));
  EXPECT_FALSE(reads("apps/x"));
  gate_.on_update(EntityUpdate{EntityUpdate::Kind::account, "operator",
                               Fields{{"password_hash", kOpPassHash}, {"rules", R"(["read apps/#"])"}}});
  EXPECT_FALSE(reads("/sys/A/B/C/uplink"));
  EXPECT_TRUE(reads("apps/x"));
  auto reg = std::make_unique<Registry>();
  Account op;
  op.name = "operator";
  op.password_hash = parse_pbkdf2_hash(kOpPassHash);
  op.rules = {*parse_account_rule("read fleet/#")};
  reg->put_account(op);
  gate_.on_snapshot(Snapshot{std::move(reg), {}, {}});
  EXPECT_FALSE(reads("apps/x"));
  EXPECT_TRUE(reads("fleet/x"));
  gate_.on_update(EntityUpdate{EntityUpdate::Kind::account, "operator", std::nullopt});
  EXPECT_FALSE(reads("fleet/x"));  // until the broker closes the connection it asked to kick
}

// An account's reads are mostly answered from the session index's copy of one of its rules (a "X/#" read rule, or
// superuser): every change of the account must reach that copy at once, for a connected session, whichever rule the
// change adds or takes away.
TEST_F(GateTest, AccountReadsAnsweredFromTheIndexFollowEveryChange) {
  ASSERT_TRUE(login("operator:1", "operator", "s3cret-pass"));
  auto reads = [&](std::string_view topic) {
    return gate_.check_acl("operator:1", &handles_["operator:1"], "operator", Access::read, topic);
  };
  auto change = [&](const char* rules, bool superuser = false) {
    Fields f{{"password_hash", kOpPassHash}, {"rules", rules}};
    if (superuser) f["superuser"] = "1";
    gate_.on_update(EntityUpdate{EntityUpdate::Kind::account, "operator", f});
  };
  EXPECT_TRUE(reads("/sys/A/B/C/uplink"));
  EXPECT_FALSE(reads("/system/x"));
  EXPECT_FALSE(reads("$SYS/broker/uptime"));
  change(R"([])", true);  // superuser: every read, '$' topics too
  EXPECT_TRUE(reads("$SYS/broker/uptime"));
  EXPECT_TRUE(reads("anything"));
  change(R"(["read /sys/+/+/+/uplink"])");  // no longer superuser; a rule the index does not copy
  EXPECT_FALSE(reads("$SYS/broker/uptime"));
  EXPECT_TRUE(reads("/sys/A/B/C/uplink"));  // answered by the rules
  EXPECT_FALSE(reads("/sys/A/B/C/downlink"));
  change(R"(["read apps/#", "read /sys/#"])");  // the index copies the first; the second still counts
  EXPECT_TRUE(reads("apps/x"));
  EXPECT_TRUE(reads("/sys/A/B/C/downlink"));
  const std::string long_stem(60, 'x');  // longer than the index holds: the rules answer
  change(("[\"read " + long_stem + "/#\"]").c_str());
  EXPECT_TRUE(reads(long_stem + "/y"));
  EXPECT_FALSE(reads(long_stem + "y"));
  EXPECT_FALSE(reads("apps/x"));
  EXPECT_FALSE(reads("/sys/A/B/C/uplink"));
}

TEST_F(GateTest, AccountsAndEmuGateways) {
  EXPECT_TRUE(login("operator:1", "operator", "s3cret-pass"));
  EXPECT_TRUE(gate_.check_acl("operator:1", &handles_["operator:1"], "operator", Access::subscribe, "/sys/#"));
  EXPECT_FALSE(gate_.check_acl("operator:1", &handles_["operator:1"], "operator", Access::write, "/sys/x"));
  EXPECT_TRUE(login("operator:2", "operator", "s3cret-pass"));  // second time from the verified cache
  EXPECT_FALSE(login("operator:3", "operator", "wrong"));
  EXPECT_TRUE(login("gw1", "gw1", "s3cret-pass"));
  EXPECT_EQ(gate_.session("gw1")->prefix, "v1/wudun/PK1/gw1/");
  EXPECT_FALSE(login("gw1", "gw1", "nope"));
  EXPECT_FALSE(login("x", "nobody", "pw"));
  EXPECT_TRUE(logged("unknown user"));
  // Client ids are bound to the name, so that no login can take over (and kick) another client's session.
  EXPECT_TRUE(login("gw1:main", "gw1", "s3cret-pass"));
  EXPECT_FALSE(login("operator:1", "gw1", "s3cret-pass"));
  EXPECT_TRUE(logged("client id is not 'gw1' or 'gw1:...'"));
  EXPECT_FALSE(login("AA30C505-20MQTTJ000121", "gw1", "s3cret-pass"));
  EXPECT_FALSE(login("gw1-x", "gw1", "s3cret-pass"));
  EXPECT_FALSE(login("backend-1", "operator", "s3cret-pass"));
  EXPECT_FALSE(login("operatorX", "operator", "s3cret-pass"));
  EXPECT_TRUE(login("operator", "operator", "s3cret-pass"));
}

// A takeover: mosquitto checks the old connection's will right after the new one logged in with the same client id.
// The will carries only what the old connection may write, never what the new holder of the id may (issue 15).
TEST_F(GateTest, WillOfAReplacedConnectionIsJudgedWithItsOwnRights) {
  int device = 0, registrant = 0;
  ASSERT_TRUE(login("KP1", "KD1", "devsecret1", &device));
  ASSERT_TRUE(login("KP1", "NEW1", "prodsecret", &registrant));  // takes "KP1" over
  auto will = [&](const char* user, const std::string& topic) {
    return gate_.on_publish("KP1", &device, user, topic, R"({"CMD":20,"ID":"w"})");
  };
  size_t jobs = effects_.jobs.size();
  EXPECT_EQ(will("KD1", "/sys/KP1/NEW1/thing/register/post"), Verdict::drop);  // the new holder's right
  EXPECT_EQ(will("KD1", "/sys/KP1/KD1/thing/event/post"), Verdict::pass);      // its own
  EXPECT_EQ(effects_.jobs.size(), jobs);  // judged, not answered
  // Revoked meanwhile: refused.
  gate_.on_update(EntityUpdate{EntityUpdate::Kind::device, "KP1:KD1", Fields{{"enabled", "0"}, {"secret", "devsecret1"}}});
  EXPECT_EQ(will("KD1", "/sys/KP1/KD1/thing/event/post"), Verdict::drop);
  // After the tick (a delayed will): by its names, never by the session now holding the id.
  gate_.tick();
  EXPECT_EQ(will("KD1", "/sys/KP1/NEW1/thing/register/post"), Verdict::drop);
}

// A secret answered from memory goes out from the tick, and only while the connection that asked still holds its
// client id (mosquitto would route it to whoever holds the id at its next loop iteration).
TEST_F(GateTest, SecretAnsweredFromMemoryReachesTheConnectionThatAskedOrNobody) {
  std::string cid = std::string(kPid) + "-" + kEui, user = std::string("AUTH-") + kOpenid + "-" + kPid;
  std::string req = R"({"MessageId":1,"HeaderCtrl":1,"Payload":{"OpenID":"7ED01E2A","ProductID":"AA30C505","NodeEui":"20MQTTJ000121","Type":1},"Version":"2.0"})";
  int asker = 0, thief = 0;
  ASSERT_TRUE(login(cid, user, kKey, &asker));
  publish(cid, "/sys/device/auth", req, &asker);
  ASSERT_TRUE(login(cid, user, kKey, &thief));  // in the same loop iteration
  gate_.tick();
  EXPECT_TRUE(effects_.published.empty());
  EXPECT_TRUE(logged("has left or is now another connection"));
  publish(cid, "/sys/device/auth", req, &thief);
  gate_.tick();
  ASSERT_EQ(effects_.published.size(), 1u);
  EXPECT_NE(effects_.published[0].payload.find(kSecret), std::string::npos);
}

// A type 1 password made for a timestamp ahead of the clock (within clock_skew) must not outlive its session.
TEST_F(GateTest, Type1OfflineTimeIsAtLeastTheSessionsTimestamp) {
  int64_t ahead = now_ + 30;
  ASSERT_TRUE(login(v2_cid(1, ahead), v2_user(), v2_pw(ahead)));
  now_ += 2;
  gate_.on_disconnect(v2_cid(1, ahead), &handles_[v2_cid(1, ahead)]);
  EXPECT_EQ(gate_.registry().device(kPid, kEui)->last_offline, ahead);
  EXPECT_FALSE(login(v2_cid(1, ahead), v2_user(), v2_pw(ahead)));  // replayed
  EXPECT_TRUE(logged("is not after the device's last offline time"));
  EXPECT_FALSE(login(std::string("V2_") + kPid + "." + kEui + "_1_0" + std::to_string(ahead + 1), v2_user(),
                     v2_pw(ahead + 1)));  // the next second, spelled with a leading zero
  EXPECT_TRUE(logged("malformed V2 client id"));
}

// Failures ban the (address, username) pair; the whole address only when they span several usernames.
TEST_F(GateTest, FailuresBanTheUsernameFromTheAddressAndSprayingTheAddress) {
  auto attempt = [&](const std::string& address, const std::string& eui, bool good) {
    std::string cid = std::string("V2_") + kPid + "." + eui + "_0_1", user = std::string(kOpenid) + "-" + kPid + "-" + eui;
    std::string pw = good ? *lierda_v2_password(kSecret, kPid, eui, kKey, std::nullopt) : "bad";
    ClientInfo c{cid, std::string_view(user), address, &handles_[cid]};
    return gate_.authenticate(c, std::string_view(pw));
  };
  gate_.on_update(EntityUpdate{EntityUpdate::Kind::device, std::string(kPid) + ":OTHERDEV1", Fields{{"secret", kSecret}}});
  for (int i = 0; i < 30; ++i) EXPECT_FALSE(attempt("10.0.0.9", kEui, false));
  EXPECT_TRUE(logged("banning address 10.0.0.9 for username"));
  EXPECT_FALSE(attempt("10.0.0.9", kEui, false));
  EXPECT_TRUE(logged("for this username"));
  // The device itself behind the same address (a load balancer's): its valid key passes the ban (issue 18).
  EXPECT_TRUE(attempt("10.0.0.9", kEui, true));
  EXPECT_TRUE(logged("from banned address 10.0.0.9 accepted: its credentials are valid"));
  EXPECT_TRUE(attempt("10.0.0.9", "OTHERDEV1", true));  // a neighbour behind the same address
  for (int i = 0; i < 30; ++i) attempt("10.0.0.7", "SPRAY" + std::to_string(i % 5), false);
  EXPECT_TRUE(logged("banning address 10.0.0.7 for 300 s"));
  EXPECT_FALSE(attempt("10.0.0.7", "OTHERDEV1", false));
  EXPECT_TRUE(logged("address banned until"));
  EXPECT_TRUE(attempt("10.0.0.7", "OTHERDEV1", true));
  now_ += 301;
  EXPECT_TRUE(attempt("10.0.0.7", "OTHERDEV1", true));
}

// Retained publishes under a device's prefix are recorded for that device, by the device or by a back end.
TEST_F(GateTest, RetainedPublishesAreRecordedForTheirDevice) {
  ASSERT_TRUE(login(v2_cid(0, 1), v2_user(), v2_pw(std::nullopt)));
  const std::string prefix = std::string("/sys/") + kOpenid + "/" + kPid + "/" + kEui + "/";
  EXPECT_EQ(gate_.on_publish(v2_cid(0, 1).c_str(), &handles_[v2_cid(0, 1)], v2_user().c_str(), prefix + "uplink", "x",
                             true),
            Verdict::pass);
  ASSERT_EQ(effects_.jobs.back().type, StoreJob::Type::retained);
  EXPECT_EQ(effects_.jobs.back().device, kEui);
  EXPECT_EQ(effects_.jobs.back().fields.at(prefix + "uplink"), "1");
  gate_.on_update(EntityUpdate{EntityUpdate::Kind::account, "root", Fields{{"password_hash", kOpPassHash}, {"superuser", "1"}}});
  ASSERT_TRUE(login("root", "root", "s3cret-pass"));
  size_t jobs = effects_.jobs.size();
  gate_.on_publish("root", &handles_["root"], "root", prefix + "downlink", "", true);  // clears it
  ASSERT_EQ(effects_.jobs.size(), jobs + 1);
  EXPECT_EQ(effects_.jobs.back().product, kPid);
  EXPECT_EQ(effects_.jobs.back().fields.at(prefix + "downlink"), "0");
  gate_.on_publish("root", &handles_["root"], "root", "/sys/KP1/KD1/thing/event/post", "x", true);
  EXPECT_EQ(effects_.jobs.back().device, "KD1");
  gate_.on_publish("root", &handles_["root"], "root", "v1/wudun/PK1/gw1/ota/emu_version/command", "x", true);
  EXPECT_EQ(effects_.jobs.back().device, "gw1");
  jobs = effects_.jobs.size();
  gate_.on_publish("root", &handles_["root"], "root", "/sys/7ED01E2A/AA30C505/NOSUCHDEV/downlink", "x", true);
  gate_.on_publish("root", &handles_["root"], "root", "v1/user/PK1/gw1/ota/emu_version/command", "x", true);
  gate_.on_publish("root", &handles_["root"], "root", "elsewhere/x", "x", true);
  EXPECT_EQ(effects_.jobs.size(), jobs);  // no device of that topic
  gate_.on_command(Command{{{"kind", "clear_retained"}, {"topics", R"(["a/b","bad/#",7])"}}});
  EXPECT_EQ(effects_.cleared, std::vector<std::string>{"a/b"});
}

// The session index keeps prefixes of up to 38 bytes in its summary and reads longer ones from the session. Either
// way a device reaches its own topics and not those of a device whose prefix differs only in its last byte.
TEST_F(GateTest, DeviceAclHoldsForPrefixesInsideAndBeyondTheIndexSummary) {
  auto reg = std::make_unique<Registry>(gate_.registry());
  std::vector<std::pair<std::string, std::string>> pairs;  // KRT prefixes "/sys/KP1/<id>/thing/": 38, 39, 77 bytes
  for (size_t size : {22, 23, 61}) {
    std::string id(size, 'D'), neighbour(size - 1, 'D');
    neighbour += 'E';
    for (const std::string& d_id : {id, neighbour}) {
      Device d;
      d.product = "KP1";
      d.id = d_id;
      d.secret = "secret-" + d_id;
      reg->put_device(d);
    }
    pairs.emplace_back(id, neighbour);
  }
  gate_.on_snapshot(Snapshot{std::move(reg), {}, {}});
  for (const auto& [id, neighbour] : pairs) {
    std::string cid = "KP1." + id;
    ASSERT_TRUE(login(cid, id, "secret-" + id)) << id.size();
    ASSERT_EQ(gate_.session(cid)->prefix.size(), 16 + id.size());
    const void* conn = &handles_[cid];
    EXPECT_TRUE(gate_.check_acl(cid.c_str(), conn, id.c_str(), Access::write, "/sys/KP1/" + id + "/thing/event/post"));
    EXPECT_FALSE(
        gate_.check_acl(cid.c_str(), conn, id.c_str(), Access::write, "/sys/KP1/" + neighbour + "/thing/event/post"))
        << id.size();
    EXPECT_TRUE(gate_.check_acl(cid.c_str(), conn, id.c_str(), Access::read, "/sys/KP1/" + id + "/thing/service/set"));
    EXPECT_FALSE(
        gate_.check_acl(cid.c_str(), conn, id.c_str(), Access::read, "/sys/KP1/" + neighbour + "/thing/service/set"));
  }
}

// Found by fuzz_login: a V2 client id whose timestamp was padded to 118 digits with zeros was accepted (type 0
// does not use the timestamp). An odd id is refused as malformed, whatever the type.
TEST_F(GateTest, V2ClientIdWithAnOverlongTimestampIsRefused) {
  std::string padded = std::string("V2_") + kPid + "." + kEui + "_0_" + std::string(30, '0') + "1";
  EXPECT_FALSE(login(padded, v2_user(), v2_pw(std::nullopt)));
  EXPECT_TRUE(logged("malformed V2 client id"));
  EXPECT_TRUE(login(v2_cid(0, 1), v2_user(), v2_pw(std::nullopt)));  // the same login with a plain timestamp
}

TEST_F(GateTest, AclFallsBackToNamesForClientsWithoutSession) {
  // A will published after the DISCONNECT event, or a retained message re-checked after its publisher left.
  std::string cid = v2_cid(0, 1);
  EXPECT_TRUE(gate_.check_acl(cid.c_str(), nullptr, v2_user().c_str(), Access::write, "/sys/7ED01E2A/AA30C505/20MQTTJ000121/uplink"));
  EXPECT_FALSE(gate_.check_acl(cid.c_str(), nullptr, v2_user().c_str(), Access::write, "/sys/7ED01E2A/AA30C505/20MQTTJ000122/uplink"));
  EXPECT_FALSE(gate_.check_acl("nobody", nullptr, nullptr, Access::write, "a"));
}

TEST_F(GateTest, ChangesKickSessionsThatLostTheirRight) {
  ASSERT_TRUE(login(v2_cid(0, 1), v2_user(), v2_pw(std::nullopt)));
  ASSERT_TRUE(login("operator:1", "operator", "s3cret-pass"));
  gate_.on_update(EntityUpdate{EntityUpdate::Kind::device, std::string(kPid) + ":" + kEui,
                               Fields{{"enabled", "0"}, {"secret", kSecret}}});
  ASSERT_EQ(effects_.kicks.size(), 1u);
  EXPECT_EQ(effects_.kicks[0], v2_cid(0, 1));
  gate_.on_disconnect(v2_cid(0, 1), &handles_[v2_cid(0, 1)]);
  EXPECT_FALSE(login(v2_cid(0, 2), v2_user(), v2_pw(std::nullopt)));
  EXPECT_TRUE(logged("is disabled"));
  gate_.on_update(EntityUpdate{EntityUpdate::Kind::account, "operator", std::nullopt});
  ASSERT_EQ(effects_.kicks.size(), 2u);
  EXPECT_EQ(effects_.kicks[1], "operator:1");
  EXPECT_FALSE(login("operator:1", "operator", "s3cret-pass"));
  // A new device arriving through the change stream can log in at once.
  gate_.on_update(EntityUpdate{EntityUpdate::Kind::device, std::string(kPid) + ":NEWDEV9",
                               Fields{{"enabled", "1"}, {"secret", kSecret}}});
  std::string pw = *lierda_v2_password(kSecret, kPid, "NEWDEV9", kKey, std::nullopt);
  EXPECT_TRUE(login("V2_AA30C505.NEWDEV9_0_1", "7ED01E2A-AA30C505-NEWDEV9", pw));
}

TEST_F(GateTest, SnapshotKeepsOfflineTimesNewerThanRedis) {
  int64_t ts = now_ - 5;
  ASSERT_TRUE(login(v2_cid(1, ts), v2_user(), v2_pw(ts)));
  gate_.on_disconnect(v2_cid(1, ts), &handles_[v2_cid(1, ts)]);
  // Redis came back without the held write applied yet: the memory's later offline time must survive.
  reload_with_only_the_v2_device();
  EXPECT_FALSE(login(v2_cid(1, ts), v2_user(), v2_pw(ts)));
}

// A load is parsed over many TICKs: a device may log out, here or on another broker, after the load read it.
TEST_F(GateTest, SnapshotKeepsOfflineTimesChangedWhileTheLoadWasParsed) {
  int64_t ts = now_ - 5;
  ASSERT_TRUE(login(v2_cid(1, ts), v2_user(), v2_pw(ts)));
  auto reg = load_of_only_the_v2_device();  // parsed while the device is still online
  gate_.on_disconnect(v2_cid(1, ts), &handles_[v2_cid(1, ts)]);  // then it goes offline
  gate_.on_snapshot(Snapshot{std::move(reg), {}, {}});
  EXPECT_EQ(gate_.registry().device(kPid, kEui)->last_offline, now_);
  EXPECT_FALSE(login(v2_cid(1, ts), v2_user(), v2_pw(ts)));  // a replay of its type-1 password

  // The same with an offline time another broker announced (Gate::on_fleet_event).
  reg = load_of_only_the_v2_device();
  gate_.on_command(fleet_event("other", {}, {{now_ + 30, std::string(kPid) + ":" + kEui}}));
  gate_.on_snapshot(Snapshot{std::move(reg), {}, {}});
  EXPECT_EQ(gate_.registry().device(kPid, kEui)->last_offline, now_ + 30);
}

TEST_F(GateTest, RepeatedFailuresBanTheAddressOnly) {
  std::string cid = v2_cid(0, 1);
  auto from = [&](const std::string& address, const std::string& pw) {
    ClientInfo c{cid, std::string_view(v2_user_), address, &handles_["x"]};
    return gate_.authenticate(c, std::string_view(pw));
  };
  v2_user_ = v2_user();
  std::string good = v2_pw(std::nullopt);
  for (int i = 0; i < 29; ++i) EXPECT_FALSE(from("10.0.0.9", "bad"));
  EXPECT_TRUE(from("10.0.0.9", good));  // 29 failures: not yet
  EXPECT_FALSE(from("10.0.0.9", "bad"));  // the 30th bans
  EXPECT_TRUE(logged("banning address 10.0.0.9"));
  EXPECT_FALSE(from("10.0.0.9", "bad"));  // banned: refused unchecked
  EXPECT_TRUE(logged("address banned until"));
  EXPECT_TRUE(from("10.0.0.9", good));  // valid device credentials pass a ban (issue 18: load balancers)
  EXPECT_TRUE(from("10.0.0.10", good));  // other addresses are not affected
  now_ += 301;
  EXPECT_TRUE(from("10.0.0.9", good));
}

// Found by fuzz_messages: KRT devices may share the client id ProductID. A secret issued for one device must not
// reach another device that took the client id over while the write was pending.
TEST_F(GateTest, PendingSecretIsNotSentToAnotherConnectionWithTheSameClientId) {
  int first = 0, second = 0;
  ASSERT_TRUE(login("KP1", "NEW1", "prodsecret", &first));
  publish("KP1", "/sys/KP1/NEW1/thing/register/post", R"({"CMD":20,"ID":"a"})", &first);
  ASSERT_EQ(effects_.jobs.size(), 1u);
  StoreJob job = effects_.jobs[0];
  ASSERT_TRUE(login("KP1", "KD1", "devsecret1", &second));  // takeover of client id "KP1" by another device
  gate_.on_disconnect("KP1", &first);
  gate_.on_result(StoreResult{job.token, true, "", Fields{{"enabled", "1"}, {"origin", "auto"}, {"secret", job.candidate_secret}}});
  for (const auto& p : effects_.published) EXPECT_EQ(p.payload.find(job.candidate_secret), std::string::npos) << p.topic;
  EXPECT_TRUE(effects_.published.empty());
  EXPECT_TRUE(logged("not sent"));
}

TEST_F(GateTest, StoreErrorsAreLoggedOnlyAsKnownCodes) {
  std::string cid = "BB30C505-NEWDEV03";
  ASSERT_TRUE(login(cid, "AUTH-7ED01E2A-BB30C505", kKey));
  publish(cid, "/sys/device/auth",
                   R"({"MessageId":5,"HeaderCtrl":1,"Payload":{"OpenID":"7ED01E2A","ProductID":"BB30C505","NodeEui":"NEWDEV03","Type":0},"Version":"2.0"})");
  ASSERT_EQ(effects_.jobs.size(), 1u);
  gate_.on_result(StoreResult{effects_.jobs[0].token, false, "leaked-secret-text", std::nullopt});
  for (const auto& l : lines_) EXPECT_EQ(l.find("leaked-secret-text"), std::string::npos) << l;
  EXPECT_TRUE(logged("store error"));
}

// A deeply nested payload must not exhaust the broker thread's stack, even with max_payload raised to its top.
TEST_F(GateTest, DeeplyNestedPayloadIsRefusedWithoutRecursion) {
  Config big;
  big.max_payload = 16 * 1024 * 1024;
  FakeEffects fx;
  Gate gate(big, log_, fx, [this] { return now_; });
  auto reg = std::make_unique<Registry>();
  reg->put_product(*gate_.registry().product(kPid));
  gate.on_snapshot(Snapshot{std::move(reg), {}, {}});
  std::string cid = std::string(kPid) + "-" + kEui;
  ClientInfo c{cid, std::string_view("AUTH-7ED01E2A-AA30C505"), "", &handles_[cid]};
  ASSERT_TRUE(gate.authenticate(c, std::string_view(kKey)));
  EXPECT_EQ(gate.on_publish(cid.c_str(), &handles_[cid], "AUTH-7ED01E2A-AA30C505", "/sys/device/auth",
                            std::string(4 * 1024 * 1024, '[')), Verdict::drop);
  EXPECT_TRUE(fx.published.empty());
}

// Sessions keep a pointer to their device; a removal or a reload must never leave the disconnect writing through
// a stale one (the offline time belongs on the device as it is now).
TEST_F(GateTest, DisconnectAfterDeviceRemovalOrReloadRecordsOnTheCurrentDevice) {
  std::string device_id = std::string(kPid) + ":" + kEui;
  Fields fields{{"enabled", "1"}, {"secret", kSecret}};
  ASSERT_TRUE(login(v2_cid(0, 1), v2_user(), v2_pw(std::nullopt)));
  gate_.on_update(EntityUpdate{EntityUpdate::Kind::device, device_id, std::nullopt});
  // Another device first (it may well get the freed entry's memory), then a new entry with the same id.
  gate_.on_update(EntityUpdate{EntityUpdate::Kind::device, std::string(kPid) + ":OTHER01", fields});
  gate_.on_update(EntityUpdate{EntityUpdate::Kind::device, device_id, fields});
  now_ += 7;
  gate_.on_disconnect(v2_cid(0, 1), &handles_[v2_cid(0, 1)]);
  EXPECT_EQ(gate_.registry().device(kPid, kEui)->last_offline, now_);
  EXPECT_EQ(gate_.registry().device(kPid, "OTHER01")->last_offline, 0);

  ASSERT_TRUE(login(v2_cid(0, 2), v2_user(), v2_pw(std::nullopt)));
  reload_with_only_the_v2_device();
  now_ += 5;
  gate_.on_disconnect(v2_cid(0, 2), &handles_[v2_cid(0, 2)]);
  EXPECT_EQ(gate_.registry().device(kPid, kEui)->last_offline, now_);
}

// Another broker's login of a client id held here: the later claim keeps the id, and the session here ends as
// offline at the claim's time (not later: the device is online there). An earlier claim, or our own, changes nothing.
TEST_F(GateTest, AnotherBrokersLaterClaimOfAClientIdEndsTheSessionHere) {
  std::string cid = v2_cid(0, 1);
  ASSERT_TRUE(login(cid, v2_user(), v2_pw(std::nullopt)));
  const Touch& claim = effects_.jobs.back().touch;
  EXPECT_EQ(claim.claim, cid);
  const int64_t started = claim.claim_at;
  EXPECT_NEAR(started, wall_ms(), 5000);
  gate_.on_command(fleet_event("otherbroker", {{started - 5, cid}}, {}));
  EXPECT_TRUE(effects_.kicks.empty());  // an older session elsewhere: it gives way, not ours
  gate_.on_command(fleet_event(gate_.broker_id(), {{started + 5000, cid}}, {}));
  EXPECT_TRUE(effects_.kicks.empty());  // our own claim
  gate_.on_command(fleet_event("otherbroker", {{started + 9, "someone-else"}, {started + 5000, cid}}, {}));
  ASSERT_EQ(effects_.kicks, std::vector<std::string>{cid});
  EXPECT_TRUE(logged("disconnecting '" + cid + "': its client id logged in on another broker"));
  now_ += 100;  // the kick lands later; the logout time is the claim's
  gate_.on_disconnect(cid, &handles_[cid]);
  EXPECT_EQ(effects_.jobs.back().touch.last_offline, (started + 5000) / 1000);
}

// Another broker's logout times reach this broker's registry: a type-1 password of a session that ended there is
// refused here.
TEST_F(GateTest, AnotherBrokersLogoutTimesRefuseReplayedTypeOnePasswords) {
  int64_t ts = now_ - 10;
  gate_.on_command(fleet_event("otherbroker", {}, {{ts, std::string(kPid) + ":" + kEui}, {5, "NOPROD:NODEV"}}));
  EXPECT_FALSE(login(v2_cid(1, ts), v2_user(), v2_pw(ts)));
  EXPECT_TRUE(logged("is not after the device's last offline time"));
  EXPECT_TRUE(login(v2_cid(1, ts + 1), v2_user(), v2_pw(ts + 1)));
  // Our own events are not applied twice, and malformed ones are ignored.
  gate_.on_command(fleet_event(gate_.broker_id(), {}, {{99999999999, std::string(kPid) + ":" + kEui}}));
  gate_.on_command(fleet_event("otherbroker", {}, {{99999999999, "no-colon"}}));
  gate_.on_command(Command{{{"kind", "fleet"}, {"broker", "otherbroker"}, {"offline", "99999999999 x"}}});
  EXPECT_LT(gate_.registry().device(kPid, kEui)->last_offline, ts + 1);
}

// While an address is banned, a password that needs PBKDF2 is not checked: only one that verified before passes
// (a service behind the same load balancer that logged in earlier), so a ban still stops guessing and the CPU cost.
TEST_F(GateTest, BannedAddressesGetNoPbkdf2OnlyPasswordsThatVerifiedBefore) {
  auto from = [&](const std::string& cid, const std::string& address, const std::string& pw) {
    ClientInfo c{cid, std::string_view("operator"), address, &handles_[cid]};
    return gate_.authenticate(c, std::string_view(pw));
  };
  for (int i = 0; i < 30; ++i) EXPECT_FALSE(from("operator:x", "10.0.0.5", "guess"));
  ASSERT_TRUE(logged("banning address 10.0.0.5 for username 'operator'"));
  EXPECT_FALSE(from("operator:x", "10.0.0.5", "s3cret-pass"));  // right, but never verified: not checked now
  EXPECT_TRUE(from("operator:1", "10.0.0.6", "s3cret-pass"));   // verified elsewhere
  EXPECT_TRUE(from("operator:2", "10.0.0.5", "s3cret-pass"));   // now it passes the ban without PBKDF2
  EXPECT_FALSE(from("operator:3", "10.0.0.5", "guess"));
}

// The metrics page's counters (metrics.h): they move with logins, refusals, takeovers, disconnects and denials.
TEST_F(GateTest, MetricsCountLoginsRefusalsSessionsAndDenials) {
  auto sample = [this](const std::string& key) {
    MetricSamples m = gate_.metrics(now_);
    auto it = m.find(key);
    return it == m.end() ? std::string("absent") : it->second;
  };
  const std::string accepted = R"(iotgate_logins_accepted_total{protocol="lierda",kind="lierda-v2"})";
  const std::string sessions = R"(iotgate_sessions{kind="lierda-v2"})";
  EXPECT_EQ(sample(accepted), "0");
  EXPECT_EQ(sample("iotgate_loaded"), "1");
  const std::string cid = v2_cid(0, 1);
  int old_conn = 0, new_conn = 0;
  EXPECT_TRUE(login(cid, v2_user(), v2_pw(std::nullopt), &old_conn));
  EXPECT_TRUE(login(cid, v2_user(), v2_pw(std::nullopt), &new_conn));  // a takeover: one session
  EXPECT_EQ(sample(accepted), "2");
  EXPECT_EQ(sample(sessions), "1");
  gate_.on_disconnect(cid, &old_conn);  // the replaced connection leaves: the session stays
  EXPECT_EQ(sample(sessions), "1");
  // A write outside its prefix, and a subscription too.
  EXPECT_EQ(gate_.on_publish(cid.c_str(), &new_conn, nullptr, "/sys/7ED01E2A/AA30C505/OTHER/uplink", "x"), Verdict::drop);
  EXPECT_FALSE(gate_.check_acl(cid.c_str(), &new_conn, nullptr, Access::subscribe, "#"));
  EXPECT_EQ(sample(R"(iotgate_acl_denials_total{access="write"})"), "1");
  EXPECT_EQ(sample(R"(iotgate_acl_denials_total{access="subscribe"})"), "1");
  EXPECT_EQ(sample(R"(iotgate_acl_denials_total{access="read"})"), "0");
  gate_.on_disconnect(cid, &new_conn);
  EXPECT_EQ(sample(sessions), "0");

  EXPECT_FALSE(login(v2_cid(0, 2), v2_user(), "5EB6"));
  EXPECT_FALSE(login("someone", std::string("nobody"), std::string("pw")));
  EXPECT_EQ(sample(R"(iotgate_logins_refused_total{protocol="lierda",reason="wrong-password"})"), "1");
  EXPECT_EQ(sample(R"(iotgate_logins_refused_total{protocol="unknown",reason="unknown-login"})"), "1");
  EXPECT_EQ(sample(R"(iotgate_bans_total{scope="username"})"), "0");
  EXPECT_EQ(sample("iotgate_bans_active"), "0");
  EXPECT_TRUE(login("operator:1", std::string("operator"), std::string("s3cret-pass")));
  EXPECT_EQ(sample(R"(iotgate_logins_accepted_total{protocol="account",kind="account"})"), "1");
  EXPECT_EQ(sample(R"(iotgate_sessions{kind="account"})"), "1");
  gate_.on_shutdown();
  EXPECT_EQ(sample(R"(iotgate_sessions{kind="account"})"), "0");
}

TEST_F(GateTest, MetricsCountBans) {
  const std::string cid = v2_cid(0, 1), user = v2_user();
  auto from = [&](const std::string& address) {
    ClientInfo c{cid, std::string_view(user), address, &handles_[cid]};
    return gate_.authenticate(c, std::string_view("0000"));
  };
  for (int i = 0; i < Config{}.auth_fail_limit; ++i) EXPECT_FALSE(from("10.0.0.9"));
  EXPECT_FALSE(from("10.0.0.9"));
  MetricSamples m = gate_.metrics(now_);
  EXPECT_EQ(m[R"(iotgate_bans_total{scope="username"})"], "1");
  EXPECT_EQ(m["iotgate_bans_active"], "1");
  EXPECT_EQ(m[R"(iotgate_logins_refused_total{protocol="lierda",reason="address-banned"})"], "1");
  EXPECT_EQ(gate_.metrics(now_ + Config{}.auth_ban_seconds + 1)["iotgate_bans_active"], "0");
}
