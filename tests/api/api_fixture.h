// iotgate-api under test: a real redis-server (tests/integration/harness.h), the built iotgate-api on a
// free loopback port, and an HTTP client.
#pragma once
#include <gtest/gtest.h>
#include <httplib.h>
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <memory>
#include <string>
#include <thread>

#include "harness.h"

namespace iotgate::test {

struct HttpResult {
  int status = -1;  // -1: no answer (connection failed)
  std::string body;
  rapidjson::Document json;  // parsed body (kNullType when not JSON)
  const rapidjson::Value& operator[](const char* k) const { return json[k]; }
  std::string str(const char* k) const {
    if (!json.IsObject() || !json.HasMember(k)) return "<absent>";
    const auto& v = json[k];
    if (v.IsString()) return v.GetString();
    if (v.IsInt64()) return std::to_string(v.GetInt64());
    if (v.IsBool()) return v.GetBool() ? "true" : "false";
    if (v.IsNull()) return "null";
    return "<other>";
  }
  std::string msg() const { return str("msg"); }
};

// iotgate-api as a child process; its stderr (the request log) goes to a file.
class ApiProcess {
 public:
  ApiProcess(const RedisServer& redis, std::string prefix = "iotgate:", std::vector<std::string> extra = {})
      : port_(free_port()) {
    log_ = dir_.path + "/api.log";
    std::vector<std::string> argv = {IOTGATE_API_PATH,  "--listen", "127.0.0.1:" + std::to_string(port_),
                                     "--redis",         redis.uri(), "--prefix", prefix, "--web", ""};
    argv.insert(argv.end(), extra.begin(), extra.end());
    proc_.spawn(argv, log_);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      if (log().find("listening on") != std::string::npos) return;
      if (!proc_.running()) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    throw std::runtime_error("iotgate-api did not start: " + log());
  }
  int port() const { return port_; }
  std::string log() const { return read_file(log_); }
  Process& process() { return proc_; }

 private:
  TempDir dir_;
  std::string log_;
  int port_;
  Process proc_;
};

class ApiClient {
 public:
  ApiClient(int port, std::string token) : http_("127.0.0.1", port), token_(std::move(token)) {
    http_.set_connection_timeout(5, 0);
    http_.set_read_timeout(10, 0);
  }
  void set_token(std::string t) { token_ = std::move(t); }
  const std::string& token() const { return token_; }

  HttpResult call(const std::string& method, const std::string& path, const std::string& body = "",
                  httplib::Headers extra = {}) {
    httplib::Headers h = std::move(extra);
    if (!token_.empty()) h.emplace("Access-Token", token_);
    httplib::Result r{nullptr, httplib::Error::Unknown};
    if (method == "GET") r = http_.Get(path, h);
    else if (method == "POST") r = http_.Post(path, h, body, "application/json");
    else if (method == "PUT") r = http_.Put(path, h, body, "application/json");
    HttpResult out;
    if (!r) return out;
    out.status = r->status;
    out.body = r->body;
    out.json.Parse(out.body.c_str(), out.body.size());
    if (out.json.HasParseError()) out.json.SetNull();
    return out;
  }
  HttpResult get(const std::string& path) { return call("GET", path); }
  HttpResult post(const std::string& path, const std::string& body) { return call("POST", path, body); }
  HttpResult put(const std::string& path, const std::string& body) { return call("PUT", path, body); }

 private:
  httplib::Client http_;
  std::string token_;
};

inline std::string write_value(const rapidjson::Value& v) {
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w(buf);
  v.Accept(w);
  return std::string(buf.GetString(), buf.GetSize());
}

// "token add" through the CLI; returns the token.
inline std::string make_token(const RedisServer& redis, const std::string& member, const std::string& prefix = "iotgate:") {
  CommandResult r = run_cli(redis, {"token", "add", "--member", member}, prefix);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return json_string(r.out, "token");
}

}  // namespace iotgate::test
