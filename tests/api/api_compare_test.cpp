// The CLI and the API are two doors to the same scripts: the same operations, done through each on its own key
// prefix of one Redis, leave the same results.
#include <regex>

#include "api_fixture.h"

namespace iotgate::test {
namespace {

const std::string kMd5 = "0123456789abcdef0123456789abcdef";
const std::string kBase = "/v2/upgrade/firmware/";

// Times differ between the two runs: blank them.
std::string without_times(const std::string& json) {
  static const std::regex iso(R"("\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d\dZ")");
  static const std::regex ms(R"("created_at":"\d+")");
  static const std::regex sec(R"("finished_at":\d+)");
  std::string s = std::regex_replace(json, iso, "\"T\"");
  s = std::regex_replace(s, ms, "\"created_at\":\"T\"");
  return std::regex_replace(s, sec, "\"finished_at\":0");
}

class CliApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    redis.start();
    for (const std::string p : {"cli:", "api:"}) {
      cli(p, {"product", "add", "lierda", "--openid", "7ED01E2A", "--product-id", "AA30C505", "--auth-type", "1"});
      for (const char* d : {"DEV001", "DEV002", "DEV003"})
        cli(p, {"device", "add", "lierda", "--product-id", "AA30C505", "--node-eui", d, "--secret", std::string(32, 'A')});
    }
    api = std::make_unique<ApiProcess>(redis, "api:");
    alice = std::make_unique<ApiClient>(api->port(), make_token(redis, "alice", "api:"));
    bob = std::make_unique<ApiClient>(api->port(), make_token(redis, "bob", "api:"));
  }
  std::string cli(const std::string& prefix, std::vector<std::string> args) {
    CommandResult r = run_cli(redis, args, prefix);
    EXPECT_EQ(r.exit_code, 0) << testing::PrintToString(args) << ": " << r.err;
    while (!r.out.empty() && r.out.back() == '\n') r.out.pop_back();
    return r.out;
  }
  std::string as(const std::string& op, std::vector<std::string> args) {
    args.insert(args.begin(), {"--operator", op});
    return cli("cli:", args);
  }
  std::string http(ApiClient& c, const std::string& method, const std::string& path, const std::string& body = "") {
    auto r = c.call(method, path, body);
    EXPECT_EQ(r.status, 200) << method << " " << path << " " << body << ": " << r.body;
    return r.body;
  }
  void same(const std::string& what, const std::string& from_cli, const std::string& from_api) {
    EXPECT_EQ(without_times(from_cli), without_times(from_api)) << what;
  }

  RedisServer redis;
  std::unique_ptr<ApiProcess> api;
  std::unique_ptr<ApiClient> alice, bob;
};

TEST_F(CliApiTest, SameOperationsSameResults) {
  const std::vector<std::string> target = {"--target-version", "2.0", "--target-url", "http://fw.example/2.0.bin",
                                           "--target-md5", kMd5, "--target-size", "4096"};
  auto create_cli = [&](std::vector<std::string> extra) {
    std::vector<std::string> a = {"task", "create", "--product-id", "AA30C505", "--name", "fw", "--description", "d"};
    a.insert(a.end(), target.begin(), target.end());
    a.insert(a.end(), extra.begin(), extra.end());
    return as("alice", a);
  };
  const std::string body = R"("product_id":"AA30C505","name":"fw","description":"d","target_version":"2.0",)"
                           R"("target_version_url":"http://fw.example/2.0.bin","target_version_md5":")" + kMd5 +
                           R"(","target_version_size":4096)";
  same("create production",
       create_cli({"--from-version", "1.0", "--gray-percent", "50"}),
       http(*alice, "POST", kBase + "task", "{" + body + R"(,"from_version":"1.0","gray_percent":50})"));
  same("create test",
       create_cli({"--from-version", "1.1", "--tag-type", "1", "--devices", "DEV001", "--type", "mcu", "--identify", "m1"}),
       http(*alice, "POST", kBase + "task",
            "{" + body + R"(,"from_version":"1.1","tag_type":1,"type":2,"identify":"m1","scope":{"category":1,"device_list":["DEV001"]}})"));
  same("submit", as("alice", {"task", "submit", "1", "--reviewer", "bob"}),
       http(*alice, "PUT", kBase + "tasks/1/submit-audit", R"({"audit_member_id":"bob"})"));
  same("review", as("bob", {"task", "review", "1", "--approve"}),
       http(*bob, "PUT", kBase + "tasks/1/audit", R"({"audit_result":1})"));
  same("devices add", as("alice", {"task", "devices", "2", "--add", "DEV002,DEV003"}),
       http(*alice, "PUT", kBase + "tasks/2/devices", R"({"opt":1,"device_list":["DEV002","DEV003"]})"));
  same("devices remove", as("alice", {"task", "devices", "2", "--remove", "DEV001"}),
       http(*alice, "PUT", kBase + "tasks/2/devices", R"({"opt":2,"device_list":["DEV001"]})"));
  same("start test", as("alice", {"task", "start", "2"}),
       http(*alice, "POST", kBase + "task/status", R"({"product_id":"AA30C505","upgrade_task_id":"2","status":1})"));
  same("stop", as("alice", {"task", "stop", "1"}),
       http(*alice, "POST", kBase + "task/status", R"({"product_id":"AA30C505","upgrade_task_id":"1","status":"0"})"));
  same("start", as("alice", {"task", "start", "1"}),
       http(*alice, "POST", kBase + "task/status", R"({"product_id":"AA30C505","upgrade_task_id":"1","status":"1"})"));
  same("to production", as("alice", {"task", "to-production", "2", "--name", "fw-prod", "--scope-category", "1", "--devices", "DEV003"}),
       http(*alice, "PUT", kBase + "tasks/2/product-tag", R"({"name":"fw-prod","scope":{"category":1,"device_list":["DEV003"]}})"));
  same("report", as("alice", {"task", "report", "1", "--device", "DEV001", "--last-version", "1.0", "--current-version", "2.0", "--result", "0"}),
       http(*alice, "POST", kBase + "report/DEV001", R"({"last_version":"1.0","current_version":"2.0","result":0})"));
  same("report failure", as("alice", {"task", "report", "1", "--device", "DEV002", "--last-version", "1.0", "--current-version", "1.0", "--result", "1"}),
       http(*alice, "POST", kBase + "report/DEV002", R"({"task_id":"1","last_version":"1.0","current_version":"1.0","result":1})"));
  same("log add", as("alice", {"task", "log", "add", "--task", "1", "--device", "DEV003", "--mac", "aa:bb"}),
       http(*alice, "POST", "/v2/upgrade/ota-log", R"({"task_id":"1","device_id":"DEV003","device_mac":"aa:bb"})"));

  // reads
  for (const char* id : {"1", "2"}) {
    same(std::string("get ") + id, cli("cli:", {"task", "get", id}), http(*alice, "GET", kBase + "tasks/" + id));
    same(std::string("oplog ") + id, cli("cli:", {"task", "oplog", id, "--limit", "100"}),
         http(*alice, "GET", kBase + "tasks/" + id + "/op-logs?limit=100"));
  }
  same("list", cli("cli:", {"task", "list", "--product-id", "AA30C505"}),
       http(*alice, "GET", kBase + "tasks?product_id=AA30C505"));
  same("query", cli("cli:", {"task", "query", "--product-id", "AA30C505", "--query", R"({"name":{"$like":"fw%"}})", "--order", R"({"status":"desc","id":"asc"})"}),
       http(*alice, "POST", kBase + "tasks", R"({"product_id":"AA30C505","query":{"name":{"$like":"fw%"}},"order":{"status":"desc","id":"asc"}})"));
  same("log query", cli("cli:", {"task", "log", "query", "--query", R"({"status":{"$in":[1,2]}})", "--order", R"({"device_id":"desc"})"}),
       http(*alice, "POST", "/v2/upgrade/ota-logs", R"({"query":{"status":{"$in":[1,2]}},"order":{"device_id":"desc"}})"));
  same("check", cli("cli:", {"task", "check", "--product-id", "AA30C505", "--device", "DEV003", "--type", "wifi", "--current-version", "1.0"}),
       http(*alice, "POST", kBase + "check/DEV003", R"({"product_id":"AA30C505","type":"wifi","current_version":"1.0","identify":"0"})"));

  // the API's own shapes of task show and task versions
  rapidjson::Document show, progress, versions, ratios;
  std::string s1 = cli("cli:", {"task", "show", "1"}), s2 = http(*alice, "GET", kBase + "tasks/1/progress");
  show.Parse(s1.c_str());
  progress.Parse(s2.c_str());
  EXPECT_EQ(write_value(show["devices_by_state"]), write_value(progress["devices_by_state"]));
  std::string v1 = cli("cli:", {"task", "versions", "1"});
  std::string v2 = http(*alice, "GET", "/v2/statistics/ota/customize-task/1/device-firmware-version");
  versions.Parse(v1.c_str());
  ratios.Parse(v2.c_str());
  EXPECT_EQ(versions["total"].GetInt(), ratios["total"].GetInt());
  ASSERT_EQ(versions["versions"].Size(), ratios["ratios"].Size());
  for (rapidjson::SizeType i = 0; i < versions["versions"].Size(); ++i) {
    EXPECT_EQ(write_value(versions["versions"][i]["version"]), write_value(ratios["ratios"][i]["firmware_version"]));
    EXPECT_EQ(versions["versions"][i]["count"].GetInt(), ratios["ratios"][i]["devices"].GetInt());
  }

  // and both refuse the same way
  CommandResult r = run_cli(redis, {"--operator", "alice", "task", "review", "2", "--approve"}, "cli:");
  auto h = alice->put(kBase + "tasks/2/audit", R"({"audit_result":1})");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(h.status, 409);
  EXPECT_EQ(r.err, "iotgate: " + h.msg() + "\n");

  // every key of one prefix has its twin in the other (values checked above through the reads)
  auto keys = [&](const std::string& p) {
    std::string out = redis.cli({"--scan", "--pattern", p + "*"});
    std::vector<std::string> v;
    std::istringstream in(out);
    for (std::string k; std::getline(in, k);)
      if (k.find("api:token") == std::string::npos && k.find(":api:tokens") == std::string::npos) v.push_back(k.substr(p.size()));
    std::sort(v.begin(), v.end());
    return v;
  };
  EXPECT_EQ(keys("cli:"), keys("api:"));
}

}  // namespace
}  // namespace iotgate::test
