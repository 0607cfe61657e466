// iotgate-api against a real redis-server: every endpoint, its state rules and refusals, Redis going away,
// SIGTERM, the request log, and the CLI and the API giving the same results.
#include <signal.h>
#include <sys/wait.h>

#include <fstream>
#include <regex>

#include "api_fixture.h"

namespace iotgate::test {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

const std::string kPid = "AA30C505";
const std::string kMd5 = "0123456789abcdef0123456789abcdef";
const std::string kBase = "/v2/upgrade/firmware/";

std::string create_body(const std::string& from = "1.0", const std::string& extra = "") {
  return R"({"product_id":"AA30C505","name":"fw-2.0","description":"d","from_version":")" + from +
         R"(","target_version":"2.0","target_version_url":"http://fw.example/2.0.bin","target_version_md5":")" + kMd5 +
         R"(","target_version_size":4096)" + extra + "}";
}

class ApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    redis.start();
    cli({"product", "add", "lierda", "--openid", "7ED01E2A", "--product-id", kPid, "--auth-type", "1"});
    for (const char* d : {"DEV001", "DEV002", "DEV003"})
      cli({"device", "add", "lierda", "--product-id", kPid, "--node-eui", d});
    cli({"product", "add", "krt", "--product-id", "KP1"});
    alice_token = make_token(redis, "alice");
    bob_token = make_token(redis, "bob");
    api = std::make_unique<ApiProcess>(redis, "iotgate:", std::vector<std::string>{"--max-body", "65536"});
    alice = std::make_unique<ApiClient>(api->port(), alice_token);
    bob = std::make_unique<ApiClient>(api->port(), bob_token);
  }
  std::string cli(const std::vector<std::string>& args, const std::string& prefix = "iotgate:") {
    CommandResult r = run_cli(redis, args, prefix);
    EXPECT_EQ(r.exit_code, 0) << testing::PrintToString(args) << ": " << r.err;
    return r.out;
  }
  // Everything a refusal must leave alone: every key and value under the prefix.
  std::string snapshot() {
    std::string keys = redis.cli({"--scan", "--pattern", "iotgate:*"});
    std::vector<std::string> list;
    std::istringstream in(keys);
    for (std::string k; std::getline(in, k);) list.push_back(k);
    std::sort(list.begin(), list.end());
    std::string out;
    for (const auto& k : list) {
      std::string type = redis.cli({"TYPE", k});
      out += k + " " + type + " ";
      if (type == "hash") out += redis.cli({"HGETALL", k});
      else if (type == "string") out += redis.cli({"GET", k});
      else if (type == "list") out += redis.cli({"LRANGE", k, "0", "-1"});
      else if (type == "set") out += redis.cli({"SMEMBERS", k});  // order may vary, size is enough below
      else if (type == "zset") out += redis.cli({"ZRANGE", k, "0", "-1"});
      else if (type == "stream") out += redis.cli({"XLEN", k});
      out += "\n";
    }
    return out;
  }
  // Creates a production task and has bob approve it (alice submits): a running task.
  std::string running_task(const std::string& from = "1.0") {
    auto c = alice->post(kBase + "task", create_body(from));
    EXPECT_EQ(c.status, 200) << c.body;
    std::string id = c.str("id");
    EXPECT_EQ(alice->put(kBase + "tasks/" + id + "/submit-audit", R"({"audit_member_id":"bob"})").status, 200);
    EXPECT_EQ(bob->put(kBase + "tasks/" + id + "/audit", R"({"audit_result":1})").status, 200);
    return id;
  }

  RedisServer redis;
  std::string alice_token, bob_token;
  std::unique_ptr<ApiProcess> api;
  std::unique_ptr<ApiClient> alice, bob;
};

// ------------------------------------------------------------------------------------------- auth

TEST_F(ApiTest, AccessTokenNamesTheMemberAndIsRequired) {
  auto me = alice->get("/v2/me");
  EXPECT_EQ(me.status, 200);
  EXPECT_EQ(me.body, R"({"member":"alice"})");
  ApiClient none(api->port(), "");
  auto r = none.get("/v2/me");
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(r.str("code"), "401");
  ApiClient wrong(api->port(), alice_token + "x");
  EXPECT_EQ(wrong.get("/v2/me").status, 401);
  // a refused request from an unknown caller is refused as unknown, whatever else is wrong with it
  EXPECT_EQ(wrong.post(kBase + "task", "{not json").status, 401);
  EXPECT_EQ(none.post(kBase + "check/DEV001", "{}").status, 401);
  // only the hash is stored
  EXPECT_EQ(redis.cli({"--scan", "--pattern", "*" + alice_token.substr(4, 16) + "*"}), "");
  std::string hash_key = redis.cli({"--scan", "--pattern", "iotgate:api:token:*"});
  EXPECT_NE(hash_key, "");
  // revoked: refused at once
  std::string list = cli({"token", "list"});
  EXPECT_EQ(list.find(alice_token), std::string::npos);
  std::smatch m;
  ASSERT_TRUE(std::regex_search(list, m, std::regex(R"re("id":"([0-9a-f]{12})","member":"alice")re")));
  cli({"token", "revoke", m[1]});
  EXPECT_EQ(alice->get("/v2/me").status, 401);
  EXPECT_EQ(bob->get("/v2/me").status, 200);
}

TEST_F(ApiTest, ServesTheConsoleFilesWithoutAToken) {
  TempDir web;
  {
    std::ofstream(web.path + "/index.html") << "<h1>console</h1>";
  }
  ApiProcess served(redis, "iotgate:", {"--web", web.path});
  ApiClient anyone(served.port(), "");
  auto page = anyone.get("/");
  EXPECT_EQ(page.status, 200);
  EXPECT_EQ(page.body, "<h1>console</h1>");
  EXPECT_EQ(anyone.get("/v2/me").status, 401);  // the API still needs one
  EXPECT_EQ(anyone.get("/../../etc/passwd").status, 404);
}

TEST_F(ApiTest, ApiVersionHeader) {
  EXPECT_EQ(alice->call("GET", "/v2/me", "", {{"Api-Version", "2"}}).status, 200);
  EXPECT_EQ(alice->call("GET", "/v2/me", "", {{"Api-Version", "0"}}).status, 200);
  auto r = alice->call("GET", "/v2/me", "", {{"Api-Version", "3"}});
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.msg().find("Api-Version"), std::string::npos);
  EXPECT_EQ(alice->call("GET", "/v2/me", "", {{"Corp-ID", "corp1"}}).status, 200);
  ApiClient none(api->port(), "");
  EXPECT_EQ(none.call("GET", "/v2/me", "", {{"Api-Version", "3"}}).status, 401);
}

// ------------------------------------------------------------------------------------------- tasks

TEST_F(ApiTest, ProductionTaskReviewFlow) {
  auto c = alice->call("POST", kBase + "task", create_body(), {{"Api-Version", "2"}});
  ASSERT_EQ(c.status, 200) << c.body;
  std::string id = c.str("id");
  EXPECT_EQ(c.str("status"), "2");  // waiting
  EXPECT_EQ(c.str("tag_type"), "0");
  EXPECT_EQ(c.str("type"), "wifi");
  EXPECT_EQ(c.str("identify"), "default");
  EXPECT_EQ(c.str("target_version_size"), "4096");
  EXPECT_EQ(c["scope"]["category"].GetString(), std::string("0"));
  EXPECT_TRUE(std::regex_match(c.str("create_time"), std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d\dZ)")))
      << c.str("create_time");

  // type + identify + from_version is unique
  std::string before = snapshot();
  auto dup = alice->post(kBase + "task", create_body());
  EXPECT_EQ(dup.status, 409);
  EXPECT_EQ(dup.str("code"), "409");
  EXPECT_EQ(snapshot(), before);

  // a waiting production task cannot start; review needs submit first
  EXPECT_EQ(alice->post(kBase + "task/status", R"({"product_id":"AA30C505","upgrade_task_id":")" + id + R"(","status":1})").status, 409);
  EXPECT_EQ(bob->put(kBase + "tasks/" + id + "/audit", R"({"audit_result":1})").status, 409);
  EXPECT_EQ(alice->put(kBase + "tasks/" + id + "/submit-audit", "{}").status, 400);
  auto sub = alice->put(kBase + "tasks/" + id + "/submit-audit", R"({"audit_member_id":"bob"})");
  ASSERT_EQ(sub.status, 200) << sub.body;
  EXPECT_EQ(sub.str("status"), "3");
  EXPECT_EQ(sub.str("audit_member_id"), "bob");
  EXPECT_EQ(alice->put(kBase + "tasks/" + id + "/submit-audit", R"({"audit_member_id":"bob"})").status, 409);

  // only the named reviewer
  before = snapshot();
  auto wrong = alice->put(kBase + "tasks/" + id + "/audit", R"({"audit_result":1})");
  EXPECT_EQ(wrong.status, 403) << wrong.body;
  EXPECT_EQ(snapshot(), before);
  EXPECT_EQ(bob->put(kBase + "tasks/" + id + "/audit", R"({"audit_result":3})").status, 400);

  // reject -> waiting, submit again, approve -> running
  auto rej = bob->put(kBase + "tasks/" + id + "/audit", R"({"audit_result":"2"})");
  ASSERT_EQ(rej.status, 200);
  EXPECT_EQ(rej.str("status"), "2");
  EXPECT_EQ(rej.str("audit_member_id"), "");
  ASSERT_EQ(alice->put(kBase + "tasks/" + id + "/submit-audit", R"({"audit_member_id":"bob"})").status, 200);
  auto ok = bob->put(kBase + "tasks/" + id + "/audit", R"({"audit_result":1})");
  ASSERT_EQ(ok.status, 200);
  EXPECT_EQ(ok.str("status"), "1");

  // start / stop
  auto status = [&](int s, const std::string& pid = kPid) {
    return alice->post(kBase + "task/status",
                       R"({"product_id":")" + pid + R"(","upgrade_task_id":)" + id + R"(,"status":)" + std::to_string(s) + "}");
  };
  EXPECT_EQ(status(1).status, 409);  // already running
  EXPECT_EQ(status(0, "KP1").status, 404);  // not a task of that product
  EXPECT_EQ(status(0, "NOPE").status, 404);
  EXPECT_EQ(status(0).str("status"), "0");
  EXPECT_EQ(status(0).status, 409);
  EXPECT_EQ(status(1).str("status"), "1");  // approved once: may start again
  EXPECT_EQ(status(2).status, 400);

  // get, op-logs
  auto got = alice->get(kBase + "tasks/" + id);
  EXPECT_EQ(got.status, 200);
  EXPECT_EQ(got.str("status"), "1");
  EXPECT_TRUE(got.json.HasMember("surplus_count"));
  auto logs = alice->get(kBase + "tasks/" + id + "/op-logs?limit=100");
  ASSERT_EQ(logs.status, 200);
  EXPECT_EQ(logs["count"].GetInt(), 7);
  std::string actions, who;
  for (auto& e : logs["list"].GetArray()) {
    actions += std::string(e["action"].GetString()) + " ";
    who += std::string(e["opt_id"].GetString()) + " ";
  }
  EXPECT_EQ(actions, "create submit reject submit approve stop start ");
  EXPECT_EQ(who, "alice alice bob alice bob alice alice ");
  EXPECT_EQ(alice->get(kBase + "tasks/" + id + "/op-logs?limit=2&offset=1")["list"].Size(), 2u);

  // delete: product must match
  EXPECT_EQ(alice->post(kBase + "task/delete", R"({"id":")" + id + R"(","product_id":"KP1"})").status, 404);
  EXPECT_EQ(alice->post(kBase + "task/delete", R"({"id":")" + id + R"("})").status, 400);
  auto del = alice->post(kBase + "task/delete", R"({"id":")" + id + R"(","product_id":"AA30C505"})");
  EXPECT_EQ(del.status, 200);
  EXPECT_EQ(alice->get(kBase + "tasks/" + id).status, 404);
  EXPECT_EQ(alice->post(kBase + "task/delete", R"({"id":")" + id + R"(","product_id":"AA30C505"})").status, 404);
}

TEST_F(ApiTest, TestTaskDevicesAndProductTag) {
  EXPECT_EQ(alice->post(kBase + "task", create_body("1.0", R"(,"tag_type":1)")).status, 400);  // needs devices
  auto c = alice->post(kBase + "task", create_body("1.0", R"(,"tag_type":"1","scope":{"category":1,"device_list":["DEV001"]})"));
  ASSERT_EQ(c.status, 200) << c.body;
  std::string id = c.str("id");
  EXPECT_EQ(c.str("status"), "0");
  EXPECT_EQ(c["scope"]["device_list"].Size(), 1u);
  auto devices = [&](int opt, const std::string& list) {
    return alice->put(kBase + "tasks/" + id + "/devices", R"({"opt":)" + std::to_string(opt) + R"(,"device_list":)" + list + "}");
  };
  auto add = devices(1, R"(["DEV002","DEV001"])");
  ASSERT_EQ(add.status, 200) << add.body;
  EXPECT_EQ(add["scope"]["device_list"].Size(), 2u);
  EXPECT_EQ(devices(1, R"(["NOPE1"])").status, 404);
  EXPECT_EQ(devices(2, R"(["DEV003"])").status, 400);  // not listed
  EXPECT_EQ(devices(2, R"(["DEV001"])")["scope"]["device_list"].Size(), 1u);
  auto none = devices(2, R"(["DEV002"])");
  EXPECT_EQ(none.status, 400);
  EXPECT_NE(none.msg().find("device"), std::string::npos);
  EXPECT_EQ(devices(4, R"(["DEV002"])").status, 400);
  EXPECT_EQ(devices(3, R"("DEV002")").status, 400);
  EXPECT_EQ(devices(3, R"([1])").status, 400);
  auto rep = devices(3, R"(["DEV003"])");
  EXPECT_EQ(std::string(rep["scope"]["device_list"][0].GetString()), "DEV003");
  // a test task starts at will; submit is for production tasks
  EXPECT_EQ(alice->put(kBase + "tasks/" + id + "/submit-audit", R"({"audit_member_id":"bob"})").status, 409);
  EXPECT_EQ(alice->post(kBase + "task/status", R"({"product_id":"AA30C505","upgrade_task_id":")" + id + R"(","status":"1"})").status, 200);

  // to production: waiting, new name, scope every device
  EXPECT_EQ(alice->put(kBase + "tasks/" + id + "/product-tag", R"({"scope":{"device_list":["DEV001"]}})").status, 400);
  auto prod = alice->put(kBase + "tasks/" + id + "/product-tag", R"({"name":"fw-prod","scope":{"category":0}})");
  ASSERT_EQ(prod.status, 200) << prod.body;
  EXPECT_EQ(prod.str("tag_type"), "0");
  EXPECT_EQ(prod.str("status"), "2");
  EXPECT_EQ(prod.str("name"), "fw-prod");
  EXPECT_EQ(std::string(prod["scope"]["category"].GetString()), "0");
  EXPECT_EQ(alice->put(kBase + "tasks/" + id + "/product-tag", "{}").status, 409);
  EXPECT_EQ(devices(1, R"(["DEV001"])").status, 409);  // production tasks keep their scope
  EXPECT_EQ(alice->put(kBase + "tasks/999/product-tag", "{}").status, 404);
}

TEST_F(ApiTest, RefusalsNameTheFieldAndChangeNothing) {
  std::string before = snapshot();
  struct Case {
    std::string method, path, body;
    int status;
    std::string in_msg;
  };
  std::string big_name(33, 'n');
  std::vector<Case> cases = {
      {"POST", kBase + "task", R"({"name":"x"})", 400, "product_id"},
      {"POST", kBase + "task", std::regex_replace(create_body(), std::regex("fw-2.0"), big_name), 400, "name"},
      {"POST", kBase + "task", create_body("1.0", R"(,"type":"bogus")"), 400, "type"},
      {"POST", kBase + "task", create_body("1.0", R"(,"task_type":true)"), 400, "task_type"},
      {"POST", kBase + "task", create_body("1.0", R"(,"gray_percent":0)"), 400, "gray_percent"},
      {"POST", kBase + "task", create_body("1.0", R"(,"scope":{"category":2})"), 400, "scope.category"},
      {"POST", kBase + "task", create_body("1.0", R"(,"scope":{"category":1,"device_list":["DEV001","NOPE"]})"), 404, "NOPE"},
      {"POST", kBase + "task", create_body("1.0", R"(,"scope":{"category":1,"device_list":[]})"), 400, "scope.device_list"},
      {"POST", kBase + "task", create_body("1.0", R"(,"type":"mcu")"), 400, "identify"},
      {"POST", kBase + "task", create_body("1.0", R"(,"from_version_url":"http://x/1","from_version_md5":"zz","from_version_size":1)"), 400, "from_version_md5"},
      {"POST", kBase + "task", R"({"product_id":"NOPE1","name":"n","from_version":"1","target_version":"2","target_version_url":"http://x","target_version_md5":")" + kMd5 + R"(","target_version_size":1})", 404, "NOPE1"},
      {"POST", kBase + "task", R"({"product_id":["AA30C505"]})", 400, "product_id"},
      {"POST", kBase + "task", "[1,2]", 400, "object"},
      {"POST", kBase + "task", "{\"name\":\"a\",", 400, "JSON"},
      {"POST", kBase + "task", "{\"name\":\"\xff\"}", 400, "JSON"},
      {"POST", kBase + "task", std::string(40, '[') + std::string(40, ']'), 400, "nested"},
      {"POST", kBase + "task", "{\"a\":" + std::string(20000, '[') + std::string(20000, ']') + "}", 400, "nested"},
      {"POST", kBase + "tasks", R"({"product_id":"AA30C505","limit":101})", 400, "limit"},
      {"POST", kBase + "tasks", R"({"product_id":"AA30C505","offset":-1})", 400, "offset"},
      {"POST", kBase + "tasks", R"({"product_id":"AA30C505","query":{"status":{"$eq":"1"}}})", 400, "query"},
      {"POST", kBase + "tasks", R"({"product_id":"AA30C505","order":{"name":"up"}})", 400, "order"},
      {"POST", kBase + "tasks", R"({"product_id":"AA30C505","query":[1]})", 400, "query"},
      {"GET", kBase + "tasks?product_id=AA30C505&limit=0", "", 400, "limit"},
      {"GET", kBase + "tasks?product_id=AA30C505&offset=x", "", 400, "offset"},
      {"GET", kBase + "tasks?product_id=NOPE1", "", 404, "NOPE1"},
      {"GET", kBase + "tasks", "", 400, "product_id"},
      {"GET", kBase + "tasks/77", "", 404, "77"},
      {"GET", kBase + "tasks/abc", "", 400, "task id"},
      {"GET", kBase + "tasks/77/op-logs", "", 404, "77"},
      {"GET", kBase + "tasks/77/progress", "", 404, "77"},
      {"GET", "/v2/statistics/ota/customize-task/77/device-firmware-version", "", 404, "77"},
      {"POST", kBase + "check/DEV001", R"({"product_id":"AA30C505","type":"wifi"})", 400, "current_version"},
      {"POST", kBase + "check/NOPE1", R"({"product_id":"AA30C505","type":"wifi","current_version":"1"})", 404, "NOPE1"},
      {"POST", kBase + "check/DEV001", R"({"product_id":"AA30C505","type":"x","current_version":"1"})", 400, "type"},
      {"POST", kBase + "report/DEV001", R"({"last_version":"1.0","current_version":"2.0"})", 400, "result"},
      {"POST", kBase + "report/DEV001", R"({"last_version":"9.9","current_version":"2.0","result":0})", 404, "9.9"},
      {"POST", kBase + "report/NOPE1", R"({"last_version":"1.0","current_version":"2.0","result":0})", 404, "NOPE1"},
      {"POST", "/v2/upgrade/ota-log", R"({"task_id":"77","device_id":"DEV001"})", 404, "77"},
      {"POST", "/v2/upgrade/ota-log", R"({"device_id":"DEV001"})", 400, "task_id"},
      {"POST", "/v2/upgrade/ota-logs", R"({"filter":["bogus"]})", 400, "filter"},
      {"POST", "/v2/upgrade/ota-logs", R"({"filter":"id"})", 400, "filter"},
      {"POST", "/v2/upgrade/ota-logs", R"({"query":{"bogus":{"$lt":1}}})", 400, "query"},
      {"POST", "/v2/upgrade/ota-logs", R"({"query":{"id":{"$near":1}}})", 400, "query"},
      {"POST", "/v2/upgrade/ota-logs", R"({"limit":"1000"})", 400, "limit"},
      {"PUT", kBase + "tasks/77/submit-audit", R"({"audit_member_id":"bob"})", 404, "77"},
      {"PUT", kBase + "tasks/77/audit", R"({"audit_result":1})", 404, "77"},
      {"PUT", kBase + "tasks/77/devices", R"({"opt":1,"device_list":["DEV001"]})", 404, "77"},
      {"GET", "/v2/products?limit=500", "", 400, "limit"},
      {"GET", "/v2/products/NOPE1/devices", "", 404, "NOPE1"},
      {"PUT", "/v2/products/AA30C505/devices/NOPE1/enabled", R"({"enabled":false})", 404, "NOPE1"},
      {"PUT", "/v2/products/AA30C505/devices/DEV001/enabled", R"({"enabled":"no"})", 400, "enabled"},
      {"PUT", "/v2/products/AA30C505/devices/DEV001/enabled", R"({})", 400, "enabled"},
      {"GET", "/v2/nothing", "", 404, "endpoint"},
  };
  for (const auto& c : cases) {
    auto r = alice->call(c.method, c.path, c.body);
    EXPECT_EQ(r.status, c.status) << c.method << " " << c.path << " " << c.body.substr(0, 200) << " -> " << r.body;
    EXPECT_EQ(r.str("code"), std::to_string(c.status)) << c.path << ": " << r.body;
    EXPECT_NE(r.msg().find(c.in_msg), std::string::npos) << c.path << " " << c.body.substr(0, 200) << ": " << r.body;
  }
  EXPECT_EQ(snapshot(), before);
  EXPECT_EQ(alice->get("/v2/me").status, 200);  // still serving
}

TEST_F(ApiTest, BodiesOverTheLimitGet413) {
  std::string before = snapshot();
  std::string huge = R"({"name":")" + std::string(70000, 'x') + "\"}";
  auto r = alice->post(kBase + "task", huge);
  EXPECT_EQ(r.status, 413) << r.body.substr(0, 200);
  EXPECT_EQ(r.str("code"), "413");
  // a much larger one, announced and sent
  std::string larger(4 << 20, ' ');
  EXPECT_EQ(alice->post(kBase + "task", larger).status, 413);
  EXPECT_EQ(snapshot(), before);
  EXPECT_EQ(alice->get("/v2/me").status, 200);
  // raw garbage over a socket is answered, not fatal
  httplib::Client raw("127.0.0.1", api->port());
  auto g = raw.Get("/v2/me", {{"Access-Token", std::string(9000, 'a')}});
  EXPECT_TRUE(!g || g->status >= 400);
  EXPECT_EQ(alice->get("/v2/me").status, 200);
}

TEST_F(ApiTest, CheckAndReportCountOnce) {
  // no running task: {}
  auto c0 = alice->post(kBase + "check/DEV001", R"({"product_id":"AA30C505","type":"1","current_version":"1.0","identify":"0"})");
  EXPECT_EQ(c0.status, 200);
  EXPECT_EQ(c0.body, "{}");
  std::string id = running_task();
  auto c1 = alice->post(kBase + "check/DEV001", R"({"product_id":"AA30C505","type":"1","current_version":"1.0","identify":"0"})");
  ASSERT_EQ(c1.status, 200);
  EXPECT_EQ(c1.str("id"), id);
  EXPECT_EQ(c1.str("target_version_url"), "http://fw.example/2.0.bin");
  EXPECT_EQ(alice->post(kBase + "check/DEV001", R"({"product_id":"AA30C505","type":"wifi","current_version":"2.0"})").body, "{}");
  EXPECT_EQ(alice->post(kBase + "check/DEV001", R"({"product_id":"AA30C505","type":"mcu","current_version":"1.0","identify":"m1"})").body, "{}");

  // success must name the target version
  auto bad = alice->post(kBase + "report/DEV001", R"({"type":"1","identify":"0","last_version":"1.0","current_version":"1.5","result":"0"})");
  EXPECT_EQ(bad.status, 400);
  EXPECT_NE(bad.msg().find("current_version"), std::string::npos) << bad.body;
  auto ok = alice->post(kBase + "report/DEV001",
                        R"({"type":"1","mod":"m","identify":"0","last_version":"1.0","current_version":"2.0","result":"0","desc":"fine","start_date":"2015-10-09T08:15:40.843Z","end_date":"2015-10-09T08:16:40.843Z"})");
  ASSERT_EQ(ok.status, 200) << ok.body;
  EXPECT_EQ(ok.str("upgrade_count"), "1");
  EXPECT_EQ(alice->post(kBase + "report/DEV001", R"({"last_version":"1.0","current_version":"2.0","result":0})").status, 409);
  // with the task id, and a failure
  auto fail = alice->post(kBase + "report/DEV002", R"({"task_id":")" + id + R"(","last_version":"1.0","current_version":"1.0","result":1})");
  EXPECT_EQ(fail.status, 200) << fail.body;
  auto task = alice->get(kBase + "tasks/" + id);
  EXPECT_EQ(task.str("upgrade_count"), "1");
  auto progress = alice->get(kBase + "tasks/" + id + "/progress");
  ASSERT_EQ(progress.status, 200);
  EXPECT_EQ(progress.str("task_id"), id);
  EXPECT_EQ(progress.str("status"), "1");
  EXPECT_EQ(progress["devices_by_state"]["succeeded"].GetInt(), 1);
  EXPECT_EQ(progress["devices_by_state"]["failed"].GetInt(), 1);
  // the same numbers as task show
  rapidjson::Document show;
  std::string shown = cli({"task", "show", id});
  show.Parse(shown.c_str());
  EXPECT_EQ(write_value(progress["devices_by_state"]), write_value(show["devices_by_state"]));

  // versions: DEV001 on 2.0, DEV002 on 1.0, DEV003 never reported
  auto v = alice->get("/v2/statistics/ota/customize-task/" + id + "/device-firmware-version");
  ASSERT_EQ(v.status, 200) << v.body;
  EXPECT_EQ(v["total"].GetInt(), 3);
  ASSERT_EQ(v["ratios"].Size(), 3u);
  EXPECT_EQ(v["ratios"][0]["devices"].GetInt(), 1);
  EXPECT_TRUE(v["ratios"][2]["firmware_version"].IsNull());
}

TEST_F(ApiTest, OtaLogsAddAndQuery) {
  std::string id = running_task();
  for (const char* d : {"DEV001", "DEV002", "DEV003"}) {
    auto r = alice->call("POST", "/v2/upgrade/ota-log", R"({"device_id":")" + std::string(d) + R"(","task_id":")" + id + "\"}",
                         {{"Corp-ID", "c1"}});
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.str("status"), "1");
  }
  EXPECT_EQ(alice->post("/v2/upgrade/ota-log", R"({"device_id":"DEV001","task_id":")" + id + R"(","status":2,"device_mac":"aa:bb"})").status, 200);
  auto q = [&](const std::string& body) { return alice->post("/v2/upgrade/ota-logs", body); };
  auto all = q("{}");
  ASSERT_EQ(all.status, 200);
  EXPECT_EQ(all["count"].GetInt(), 4);
  EXPECT_EQ(q(R"({"query":{"device_id":{"$in":["DEV001","DEV003"]}}})")["count"].GetInt(), 3);
  EXPECT_EQ(q(R"({"query":{"id":{"$lt":2}}})")["count"].GetInt(), 1);
  EXPECT_EQ(q(R"({"query":{"id":{"$lte":2}}})")["count"].GetInt(), 2);
  EXPECT_EQ(q(R"({"query":{"id":{"$gt":2}}})")["count"].GetInt(), 2);
  EXPECT_EQ(q(R"({"query":{"id":{"$gte":2},"status":{"$gte":2}}})")["count"].GetInt(), 1);
  EXPECT_EQ(q(R"({"query":{"device_mac":{"$like":"AA%"}}})")["count"].GetInt(), 1);
  auto page = q(R"({"offset":1,"limit":2,"order":{"device_id":"desc","id":"asc"},"filter":["device_id","status"]})");
  ASSERT_EQ(page.status, 200);
  EXPECT_EQ(page["count"].GetInt(), 4);
  ASSERT_EQ(page["list"].Size(), 2u);
  EXPECT_EQ(std::string(page["list"][0]["device_id"].GetString()), "DEV002");
  EXPECT_FALSE(page["list"][0].HasMember("id"));
}

TEST_F(ApiTest, TaskListsGetAndPost) {
  std::vector<std::string> ids;
  for (int i = 0; i < 12; ++i) {
    std::string body = create_body("1." + std::to_string(i + 10), "");
    body.replace(body.find("fw-2.0"), 6, i % 2 ? "beta-" + std::to_string(i) : "alpha-" + std::to_string(i));
    auto r = alice->post(kBase + "task", body);
    ASSERT_EQ(r.status, 200) << r.body;
    ids.push_back(r.str("id"));
  }
  auto page = alice->get(kBase + "tasks?product_id=AA30C505");
  ASSERT_EQ(page.status, 200);
  ASSERT_TRUE(page.json.IsArray());
  EXPECT_EQ(page.json.Size(), 10u);  // default limit
  EXPECT_EQ(std::string(page.json[0]["id"].GetString()), ids[0]);
  auto second = alice->get(kBase + "tasks?product_id=AA30C505&offset=10&limit=5");
  EXPECT_EQ(second.json.Size(), 2u);
  EXPECT_EQ(alice->get(kBase + "tasks?product_id=KP1").body, "[]");

  auto q = alice->post(kBase + "tasks", R"({"product_id":"AA30C505","limit":"3","query":{"name":{"$like":"beta%"}},"order":{"name":"desc"}})");
  ASSERT_EQ(q.status, 200) << q.body;
  EXPECT_EQ(q["count"].GetInt(), 6);
  ASSERT_EQ(q["list"].Size(), 3u);
  EXPECT_EQ(std::string(q["list"][0]["name"].GetString()), "beta-9");
  auto byid = alice->post(kBase + "tasks", R"({"product_id":"AA30C505","query":{"_id":{"$eq":")" + ids[3] + R"("}}})");
  EXPECT_EQ(byid["count"].GetInt(), 1);
  EXPECT_EQ(alice->post(kBase + "tasks", R"({"product_id":"AA30C505","tag_type":1})")["count"].GetInt(), 0);
  EXPECT_EQ(alice->post(kBase + "tasks", R"({"product_id":"AA30C505","type":"wifi"})")["count"].GetInt(), 12);
}

TEST_F(ApiTest, ConsoleProductsAndDevices) {
  redis.cli({"HSET", "iotgate:last_online:" + kPid, "DEV001", "1796360000"});
  redis.cli({"HSET", "iotgate:last_offline:" + kPid, "DEV001", "1796350000", "DEV002", "1796360000"});
  redis.cli({"HSET", "iotgate:last_online:" + kPid, "DEV002", "1796350000"});
  redis.cli({"HSET", "iotgate:ota:version:" + kPid + ":DEV001", "default", "2.1", "hw:default", "h1", "updated_at", "1"});
  auto p = alice->get("/v2/products?offset=0&limit=50");
  ASSERT_EQ(p.status, 200);
  EXPECT_EQ(p.body,
            R"({"count":2,"list":[{"product_id":"AA30C505","protocol":"lierda","enabled":true,"device_count":3},)"
            R"({"product_id":"KP1","protocol":"krt","enabled":true,"device_count":0}]})");
  EXPECT_EQ(alice->get("/v2/products?offset=1&limit=1")["list"].Size(), 1u);
  auto d = alice->get("/v2/products/AA30C505/devices?offset=0&limit=2");
  ASSERT_EQ(d.status, 200);
  EXPECT_EQ(d["count"].GetInt(), 3);
  ASSERT_EQ(d["list"].Size(), 2u);
  EXPECT_EQ(write_value(d["list"][0]),
            R"({"device_id":"DEV001","enabled":true,"online":true,"last_online":"2026-12-04T04:53:20.00Z",)"
            R"("last_offline":"2026-12-04T02:06:40.00Z","versions":{"default":"2.1"}})");
  EXPECT_FALSE(d["list"][1]["online"].GetBool());
  auto third = alice->get("/v2/products/AA30C505/devices?offset=2");
  EXPECT_TRUE(third["list"][0]["last_online"].IsNull());

  auto off = alice->put("/v2/products/AA30C505/devices/DEV001/enabled", R"({"enabled":false})");
  ASSERT_EQ(off.status, 200) << off.body;
  EXPECT_FALSE(off["enabled"].GetBool());
  EXPECT_EQ(off.str("device_id"), "DEV001");
  EXPECT_EQ(redis.cli({"HGET", "iotgate:device:" + kPid + ":DEV001", "enabled"}), "0");
  // brokers are told (the CLI's script appends to the changes stream)
  std::string last = redis.cli({"XREVRANGE", "iotgate:changes", "+", "-", "COUNT", "1"});
  EXPECT_NE(last.find(kPid + ":DEV001"), std::string::npos) << last;
  EXPECT_TRUE(alice->put("/v2/products/AA30C505/devices/DEV001/enabled", R"({"enabled":true})")["enabled"].GetBool());
}

// ------------------------------------------------------------------------------------------- operation

TEST_F(ApiTest, RedisDownAnswers503ThenRecovers) {
  ASSERT_EQ(alice->get("/v2/me").status, 200);
  redis.stop();
  for (const auto& path : {std::string("/v2/me"), kBase + "tasks?product_id=AA30C505"}) {
    auto r = alice->get(path);
    EXPECT_EQ(r.status, 503) << r.body;
    EXPECT_EQ(r.body, R"({"code":503,"msg":"redis unavailable"})");
  }
  EXPECT_EQ(alice->post(kBase + "task", create_body()).status, 503);
  redis.start();
  int status = 0;
  for (int i = 0; i < 50 && status != 200; ++i) {
    status = alice->get("/v2/me").status;
    if (status != 200) std::this_thread::sleep_for(milliseconds(100));
  }
  EXPECT_EQ(status, 200);
  // the scripts are loaded again (a restarted Redis has none cached)
  redis.cli({"SCRIPT", "FLUSH"});
  EXPECT_EQ(alice->post(kBase + "task", create_body()).status, 200);
  EXPECT_EQ(alice->get(kBase + "tasks?product_id=AA30C505").status, 200);
}

// ------------------------------------------------------------------------------------------- function library

size_t count_of(const std::string& haystack, const std::string& needle) {
  size_t n = 0;
  for (size_t at = haystack.find(needle); at != std::string::npos; at = haystack.find(needle, at + 1)) ++n;
  return n;
}
const char* kLoaded = "loaded the function library iotgate";

// The CLI (SetUp) loaded the library: the API builds the same version, so it uses it as is; after FUNCTION FLUSH
// it loads it itself, the same text the CLI loads.
TEST_F(ApiTest, FunctionLibraryIsTheCliOneAndLoadedWhenMissing) {
  std::string by_cli = redis.cli({"FUNCTION", "LIST", "WITHCODE", "LIBRARYNAME", "iotgate"});
  ASSERT_NE(by_cli.find("library_code"), std::string::npos) << by_cli.substr(0, 300);
  ASSERT_EQ(alice->get(kBase + "tasks?product_id=AA30C505").status, 200);
  ASSERT_EQ(alice->post(kBase + "task", create_body()).status, 200);
  EXPECT_EQ(count_of(api->log(), kLoaded), 0u) << "the API's library differs from the CLI's";

  redis.cli({"FUNCTION", "FLUSH"});
  auto list = alice->get(kBase + "tasks?product_id=AA30C505");
  EXPECT_EQ(list.status, 200) << list.body;
  EXPECT_EQ(list.json.Size(), 1u);
  EXPECT_EQ(count_of(api->log(), kLoaded), 1u) << api->log();
  EXPECT_EQ(redis.cli({"FUNCTION", "LIST", "WITHCODE", "LIBRARYNAME", "iotgate"}), by_cli);

  // an emptied Redis (FLUSHALL and FUNCTION FLUSH, as one restarted without its data): the CLI and the API each
  // load the library on their own
  redis.cli({"FLUSHALL"});
  redis.cli({"FUNCTION", "FLUSH"});
  EXPECT_EQ(alice->get("/v2/products").status, 401);  // the token went with the data
  cli({"product", "add", "krt", "--product-id", "KP9"});
  EXPECT_EQ(redis.cli({"FUNCTION", "LIST", "WITHCODE", "LIBRARYNAME", "iotgate"}), by_cli);
  alice->set_token(make_token(redis, "alice"));
  redis.cli({"FUNCTION", "FLUSH"});
  auto page = alice->get("/v2/products");
  EXPECT_EQ(page.status, 200) << page.body;
  EXPECT_EQ(page.str("count"), "1");
  EXPECT_EQ(count_of(api->log(), kLoaded), 2u);
  EXPECT_EQ(redis.cli({"FUNCTION", "LIST", "WITHCODE", "LIBRARYNAME", "iotgate"}), by_cli);
}

// Another version of the library (other scripts, an older iotgate) is replaced; many requests at once after
// FUNCTION FLUSH load it once.
TEST_F(ApiTest, FunctionLibraryReplacesAnotherVersionAndLoadsOnce) {
  std::string by_cli = redis.cli({"FUNCTION", "LIST", "WITHCODE", "LIBRARYNAME", "iotgate"});
  redis.cli({"FUNCTION", "LOAD", "REPLACE",
             "#!lua name=iotgate\nredis.register_function('iotgate_000000000000_product_page', function() return '{}' end)"});
  auto page = alice->get("/v2/products");
  EXPECT_EQ(page.status, 200) << page.body;
  EXPECT_EQ(page.str("count"), "2");
  EXPECT_EQ(redis.cli({"FUNCTION", "LIST", "WITHCODE", "LIBRARYNAME", "iotgate"}), by_cli);

  redis.cli({"FUNCTION", "FLUSH"});
  std::string before = api->log();
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&] {
      ApiClient c(api->port(), alice_token);
      for (int i = 0; i < 10; ++i)
        if (c.get("/v2/products").status == 200) ++ok;
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 80);
  EXPECT_EQ(count_of(api->log(), kLoaded) - count_of(before, kLoaded), 1u) << api->log();
}

// task check keeps the JSON of the tasks it rendered (keyed by the task's whole content): any change of a task, by a
// script, by the plugin (upgrade_count) or by hand, shows in the next check, exactly as a fresh render shows it.
TEST_F(ApiTest, CheckAnswersEveryChangeOfTheTaskAtOnce) {
  std::string id = running_task();
  const std::string lua = read_file(std::string(IOTGATE_SOURCE_DIR) + "/scripts/lua/lib.lua") + "\n" +
                          read_file(std::string(IOTGATE_SOURCE_DIR) + "/scripts/lua/task_check.lua");
  const std::string body = R"({"product_id":"AA30C505","type":"1","current_version":"1.0","identify":"0"})";
  // the same check run as an EVAL: rendered afresh
  auto fresh = [&] { return redis.cli({"EVAL", lua, "0", "iotgate:", "AA30C505", "DEV001", "1", "1.0", "0"}); };
  auto check = [&] {
    auto r = alice->post(kBase + "check/DEV001", body);
    EXPECT_EQ(r.status, 200) << r.body;
    return r.body;
  };
  std::string first = check();
  EXPECT_EQ(check(), first);
  EXPECT_EQ(first, fresh());
  const std::string key = "iotgate:ota:task:" + id;
  redis.cli({"HINCRBY", key, "upgrade_count", "1"});  // as the plugin counts a success
  std::string second = check();
  EXPECT_NE(second, first);
  EXPECT_NE(second.find(R"("upgrade_count":"1")"), std::string::npos) << second;
  EXPECT_EQ(second, fresh());
  redis.cli({"HSET", key, "description", "by hand"});
  EXPECT_NE(check().find(R"("description":"by hand")"), std::string::npos);
  EXPECT_EQ(check(), fresh());
  redis.cli({"HSET", key, "extra_field", "x"});
  EXPECT_NE(check().find(R"("extra_field":"x")"), std::string::npos);
  EXPECT_EQ(check(), fresh());
  redis.cli({"HDEL", key, "extra_field", "description"});
  EXPECT_EQ(check().find("extra_field"), std::string::npos);
  EXPECT_EQ(check(), fresh());
  // back to the first content: the first answer again
  redis.cli({"HSET", key, "description", "d"});
  redis.cli({"HINCRBY", key, "upgrade_count", "-1"});
  EXPECT_EQ(check(), first);
  // stopped: no task; started again: the task with its new status history
  ASSERT_EQ(alice->post(kBase + "task/status", R"({"product_id":"AA30C505","upgrade_task_id":")" + id + R"(","status":0})").status, 200);
  EXPECT_EQ(check(), "{}");
  EXPECT_EQ(fresh(), "{}");
  ASSERT_EQ(alice->post(kBase + "task/status", R"({"product_id":"AA30C505","upgrade_task_id":")" + id + R"(","status":1})").status, 200);
  EXPECT_EQ(check(), fresh());
  EXPECT_NE(check(), "{}");
  // the CLI's task check: the same text
  EXPECT_EQ(cli({"task", "check", "--product-id", "AA30C505", "--device", "DEV001", "--type", "1", "--current-version", "1.0"}),
            check() + "\n");
}

TEST_F(ApiTest, RequestLogAndSigterm) {
  ASSERT_EQ(alice->get("/v2/products?offset=0&limit=5&secretq=hideme").status, 200);
  ASSERT_EQ(alice->put(kBase + "tasks/77/audit", R"({"audit_result":1})").status, 404);
  // many connections at once
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&] {
      ApiClient c(api->port(), alice_token);
      for (int i = 0; i < 20; ++i)
        if (c.get("/v2/me").status == 200) ++ok;
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 160);
  EXPECT_TRUE(api->process().terminate(seconds(5))) << "did not stop on SIGTERM";
  EXPECT_TRUE(WIFEXITED(api->process().exit_status()) && WEXITSTATUS(api->process().exit_status()) == 0)
      << api->process().exit_status();
  std::string log = api->log();
  EXPECT_TRUE(std::regex_search(log, std::regex(R"(GET /v2/products 200 [0-9.]+ms)"))) << log.substr(0, 2000);
  EXPECT_TRUE(std::regex_search(log, std::regex(R"(PUT /v2/upgrade/firmware/tasks/77/audit 404 [0-9.]+ms)")));
  EXPECT_EQ(log.find("hideme"), std::string::npos);
  EXPECT_EQ(log.find(alice_token), std::string::npos);
  EXPECT_EQ(log.find(alice_token.substr(4, 20)), std::string::npos);
  EXPECT_NE(log.find("stopped"), std::string::npos);
}

}  // namespace
}  // namespace iotgate::test
