#include "api_server.h"

#include <hiredis/hiredis.h>
#include <httplib.h>
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <functional>
#include <map>
#include <optional>
#include <vector>

#include "access_token.h"
#include "json_input.h"
#include "lua_scripts.h"

namespace iotgate::api {

namespace {

using Clock = std::chrono::steady_clock;

// The commands the routes call (scripts/lua/NAME.lua, each a function of the library): checked at startup.
const std::vector<std::string> kScripts = {
    "task_create", "task_list", "task_set_status", "task_delete", "task_check", "task_report", "task_log_add",
    "task_log_query", "task_to_production", "task_submit", "task_review", "task_devices", "task_get", "task_oplog",
    "task_versions", "product_page", "device_page", "device_set_enabled"};

// The CLI option a script's message names -> the request field (messages are written for the CLI).
const std::map<std::string, std::string> kFieldOfOption = {
    {"from-url", "from_version_url"},     {"from-md5", "from_version_md5"},     {"from-size", "from_version_size"},
    {"target-url", "target_version_url"}, {"target-md5", "target_version_md5"}, {"target-size", "target_version_size"},
    {"scope-category", "scope.category"}, {"reviewer", "audit_member_id"},      {"mac", "device_mac"},
    {"sn", "device_sn"},                  {"add", "device_list"},               {"remove", "device_list"},
    {"replace", "device_list"},           {"device", "device_id"},              {"task", "task_id"},
    {"approve", "audit_result"},          {"reject", "audit_result"}};

// "invalid --target-url: ..." -> "invalid target_version_url: ..."; `devices` is what --devices is
// called in this request (scope.device_list or device_list).
std::string api_message(const std::string& msg, const std::string& devices) {
  std::string out;
  for (size_t i = 0; i < msg.size();) {
    if (msg.compare(i, 2, "--") == 0 && i + 2 < msg.size() && msg[i + 2] >= 'a' && msg[i + 2] <= 'z') {
      size_t j = i + 2;
      while (j < msg.size() && ((msg[j] >= 'a' && msg[j] <= 'z') || (msg[j] >= '0' && msg[j] <= '9') || msg[j] == '-')) ++j;
      std::string opt = msg.substr(i + 2, j - i - 2);
      if (opt == "devices" && !devices.empty()) {
        out += devices;
      } else if (auto it = kFieldOfOption.find(opt); it != kFieldOfOption.end()) {
        out += it->second;
      } else {
        for (char c : opt) out += c == '-' ? '_' : c;
      }
      i = j;
    } else {
      out += msg[i++];
    }
  }
  return out;
}

std::string error_body(int status, const std::string& msg) {
  return "{\"code\":" + std::to_string(status) + ",\"msg\":" + json_quote(msg) + "}";
}

std::string status_message(int status) {
  switch (status) {
    case 400: return "bad request";
    case 401: return "missing or unknown Access-Token";
    case 404: return "no such endpoint";
    case 405: return "method not allowed";
    case 413: return "request body too large";
    case 414: return "request URI too long";
    case 503: return "redis unavailable";
    default: return status >= 500 ? "internal error" : "request refused";
  }
}

std::string write_json(const rapidjson::Value& v) {
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w(buf);
  v.Accept(w);
  return std::string(buf.GetString(), buf.GetSize());
}

rapidjson::Document parse_reply_json(const std::string& s) {
  rapidjson::Document d;
  d.Parse(s.data(), s.size());
  if (d.HasParseError()) throw std::runtime_error("a script returned invalid JSON");
  return d;
}

// The request's start, for the log line (httplib calls the pre-routing handler and the logger on the
// connection's worker thread).
thread_local Clock::time_point tl_request_start;

// httplib's listening socket, to widen its accept queue: Debian's libcpp-httplib listens with a backlog of
// 5 (CPPHTTPLIB_LISTEN_BACKLOG, compiled into the library), and a burst of connections beyond it has its
// handshakes dropped and retried a second later (a 1 s stall for that client).
class HttpServer : public httplib::Server {
 public:
  bool widen_backlog(int backlog) {
    socket_t fd = svr_sock_;
    return fd != INVALID_SOCKET && ::listen(fd, backlog) == 0;
  }
};

}  // namespace

struct ApiServer::Impl {
  ApiOptions opt;
  LuaLibrary scripts;
  HttpServer http;

  explicit Impl(ApiOptions o) : opt(std::move(o)), scripts(opt.lua_dir, kScripts) {}

  // One Redis connection per worker thread, opened at its first request.
  RedisLink& redis() {
    thread_local std::unique_ptr<RedisLink> link;
    if (!link) link = std::make_unique<RedisLink>(opt.redis, opt.redis_connect_timeout, opt.redis_command_timeout);
    return *link;
  }

  // One request in progress.
  struct Call {
    Impl& api;
    const httplib::Request& req;
    std::optional<std::string> member_;
    std::optional<rapidjson::Document> body_;
    std::string devices_field;  // what the script's --devices is called in this request

    std::string token_hash() const {
      std::string token = req.get_header_value("Access-Token");
      if (token.empty()) throw ApiError(401, "missing Access-Token header");
      return sha256_hex(token);
    }
    bool authenticated() const { return member_.has_value(); }

    // The token's member (one round trip, once).
    const std::string& member() {
      if (!member_) {
        std::string hash = token_hash();
        set_member(api.redis().command(token_lookup_command(api.opt.prefix, hash)), hash);
      }
      return *member_;
    }
    void set_member(const Reply& reply, const std::string& hash) {
      if (reply->type == REDIS_REPLY_ERROR) {
        std::string error(reply->str, reply->len);
        if (classify_script_error(error).status == 503) throw RedisUnavailable(error);  // LOADING, BUSY, ...
        throw std::runtime_error("token lookup: " + error);
      }
      auto m = member_of(reply, hash);
      if (!m) throw ApiError(401, "unknown Access-Token");
      member_ = std::move(*m);
    }

    const rapidjson::Value& body() {
      if (!body_) body_ = parse_json_object(req.body, api.opt.max_depth);
      return *body_;
    }

    // The script's JSON, or ApiError with the class of its refusal.
    std::string result(Reply reply) {
      if (reply->type == REDIS_REPLY_STRING) return std::string(reply->str, reply->len);
      if (reply->type == REDIS_REPLY_ERROR) {
        ScriptRefusal r = classify_script_error(std::string(reply->str, reply->len));
        if (r.status == 503) throw RedisUnavailable(r.message);
        throw ApiError(r.status, r.status == 400 ? api_message(r.message, devices_field) : r.message);
      }
      throw std::runtime_error("unexpected reply type from a script");
    }

    // A read-only script: when the caller is not authenticated yet, the token lookup and the script go
    // in one round trip, and the script's answer is thrown away unless the token is good.
    std::string read(const std::string& name, const std::vector<std::string>& args) {
      auto call = api.scripts.fcall_command(name, api.opt.prefix, args);
      RedisLink& r = api.redis();
      Reply reply;
      if (authenticated()) {
        reply = r.command(call);
      } else {
        std::string hash = token_hash();
        auto replies = r.pipeline({token_lookup_command(api.opt.prefix, hash), call});
        set_member(replies[0], hash);
        reply = std::move(replies[1]);
      }
      return result(api.scripts.finish_call(r, name, api.opt.prefix, args, std::move(reply)));
    }

    // A script that changes something: only once the caller is known (its member is the operator).
    std::string write(const std::string& name, const std::vector<std::string>& args) {
      member();
      RedisLink& r = api.redis();
      Reply reply = r.command(api.scripts.fcall_command(name, api.opt.prefix, args));
      return result(api.scripts.finish_call(r, name, api.opt.prefix, args, std::move(reply)));
    }

    // offset / limit from the query string
    std::string query_int(const char* name, long long lo, long long hi) const {
      if (!req.has_param(name)) return "";
      return std::to_string(bounded_integer(req.get_param_value(name), lo, hi, name));
    }
    std::string param(const char* name) const { return req.has_param(name) ? req.get_param_value(name) : ""; }
    std::string path_arg(size_t i) const { return req.matches[i]; }
  };

  using Route = std::function<std::string(Call&)>;

  static constexpr long long kMaxLimit = 100;
  static constexpr long long kMaxOffset = 999999999;

  // Runs a route: 200 with its JSON, or {"code":N,"msg":..}. Nothing a request does stops the server.
  void serve(const httplib::Request& req, httplib::Response& res, const Route& route) {
    Call call{*this, req, std::nullopt, std::nullopt, ""};
    int status = 200;
    std::string body;
    try {
      try {
        check_api_version(req);
        body = route(call);
      } catch (const ApiError& e) {
        // a bad request from an unknown caller is an unknown caller
        if (e.status == 400 && !call.authenticated()) call.member();
        throw;
      }
    } catch (const ApiError& e) {
      status = e.status;
      body = error_body(e.status, e.what());
    } catch (const RedisUnavailable&) {
      status = 503;
      body = error_body(503, "redis unavailable");
    } catch (const std::exception& e) {
      status = 500;
      body = error_body(500, "internal error");
      std::string line = std::string("iotgate-api: internal error in ") + req.method + " " + req.path + ": " + e.what() + "\n";
      (void)!::write(2, line.data(), line.size());
    }
    res.status = status;
    res.set_content(body, "application/json; charset=utf-8");
  }

  static void check_api_version(const httplib::Request& req) {
    if (!req.has_header("Api-Version")) return;
    std::string v = req.get_header_value("Api-Version");
    // the seed writes header values in quotes: Api-Version:"2"
    if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
    if (v != "0" && v != "2") throw ApiError(400, "invalid Api-Version header: 0 (or absent) or 2");
  }

  void route(const char* method, const std::string& pattern, Route r) {
    auto handler = [this, r = std::move(r)](const httplib::Request& req, httplib::Response& res) { serve(req, res, r); };
    std::string m = method;
    if (m == "GET") http.Get(pattern, handler);
    else if (m == "POST") http.Post(pattern, handler);
    else if (m == "PUT") http.Put(pattern, handler);
  }

  // ------------------------------------------------------------------------------------------ routes
  void add_routes() {
    const std::string task_re = R"(([^/]+))";
    const std::string base = "/v2/upgrade/firmware/";

    route("GET", "/v2/me", [](Call& c) { return "{\"member\":" + json_quote(c.member()) + "}"; });

    // 5. check (read only: the hot path of devices asking for an upgrade). httplib tries a method's
    // routes in the order they were added, each a std::regex match: the hot one goes first.
    route("POST", base + "check/" + task_re, [](Call& c) {
      const auto& b = c.body();
      return c.read("task_check", {required_field(b, "product_id", "product_id"), c.path_arg(1),
                                   required_field(b, "type", "type"), required_field(b, "current_version", "current_version"),
                                   scalar_field(b, "identify", "identify").value_or("")});
    });


    // 1. create
    route("POST", base + "task", [](Call& c) {
      c.member();
      const auto& b = c.body();
      c.devices_field = "scope.device_list";
      std::vector<std::string> args{c.member_.value()};
      auto put = [&](const char* field, const std::optional<std::string>& v) {
        if (v) {
          args.push_back(field);
          args.push_back(*v);
        }
      };
      for (const char* f : {"product_id", "name", "from_version", "target_version", "target_version_url",
                            "target_version_md5", "target_version_size"})
        put(f, required_field(b, f, f));
      for (const char* f : {"description", "from_version_url", "from_version_md5", "from_version_size", "type",
                            "identify", "task_type", "tag_type", "rate_limit", "gray_percent", "ack_timeout",
                            "upgrade_timeout"})
        put(f, scalar_field(b, f, f));
      if (auto scope = b.FindMember("scope"); scope != b.MemberEnd() && !scope->value.IsNull()) {
        if (!scope->value.IsObject()) throw ApiError(400, "invalid scope: expected an object");
        std::string cat = scalar_field(scope->value, "category", "scope.category").value_or("0");
        auto list = id_list_field(scope->value, "device_list", "scope.device_list");
        if (cat == "1") {
          put("devices", list.value_or(""));
        } else if (cat != "0") {
          throw ApiError(400, "invalid scope.category: 0 (every device) or 1 (listed devices)");
        } else if (list && !list->empty()) {
          throw ApiError(400, "invalid scope.device_list: needs scope.category 1");
        }
      }
      return c.write("task_create", args);
    });

    // 2. list (GET form): a JSON array, as the seed shows it
    route("GET", base + "tasks", [](Call& c) {
      if (!c.req.has_param("product_id")) throw ApiError(400, "missing field product_id");
      return c.read("task_list", {"list", c.param("product_id"), c.query_int("offset", 0, kMaxOffset),
                                  c.query_int("limit", 1, kMaxLimit), c.param("type"), c.param("tag_type"), "", ""});
    });

    // 3. start / stop
    route("POST", base + "task/status", [](Call& c) {
      const std::string& op = c.member();
      const auto& b = c.body();
      std::string pid = required_field(b, "product_id", "product_id");
      std::string id = required_field(b, "upgrade_task_id", "upgrade_task_id");
      std::string st = required_field(b, "status", "status");
      if (st != "0" && st != "1") throw ApiError(400, "invalid status: 0 (stop) or 1 (start)");
      return c.write("task_set_status", {op, id, st == "1" ? "start" : "stop", pid});
    });

    // 4. delete
    route("POST", base + "task/delete", [](Call& c) {
      const std::string& op = c.member();
      const auto& b = c.body();
      std::string id = required_field(b, "id", "id");
      std::string pid = required_field(b, "product_id", "product_id");
      return c.write("task_delete", {op, id, pid});
    });

    // 6. report
    route("POST", base + "report/" + task_re, [](Call& c) {
      const std::string& op = c.member();
      const auto& b = c.body();
      std::string task = scalar_field(b, "task_id", "task_id").value_or(scalar_field(b, "id", "id").value_or(""));
      std::vector<std::string> args{op, task, "device", c.path_arg(1)};
      for (const char* f : {"last_version", "current_version", "result"}) {
        args.push_back(f);
        args.push_back(required_field(b, f, f));
      }
      for (const char* f : {"type", "identify", "mod", "desc", "start_date", "end_date", "product_id"}) {
        if (auto v = scalar_field(b, f, f); v && !v->empty()) {
          args.push_back(f);
          args.push_back(*v);
        }
      }
      return c.write("task_report", args);
    });

    // 7. list (POST form): {"count":N,"list":[..]}
    route("POST", base + "tasks", [](Call& c) {
      const auto& b = c.body();
      std::string offset = scalar_field(b, "offset", "offset").value_or("");
      std::string limit = scalar_field(b, "limit", "limit").value_or("");
      if (!offset.empty()) bounded_integer(offset, 0, kMaxOffset, "offset");
      if (!limit.empty()) bounded_integer(limit, 1, kMaxLimit, "limit");
      return c.read("task_list", {"query", required_field(b, "product_id", "product_id"), offset, limit,
                                  scalar_field(b, "type", "type").value_or(""),
                                  scalar_field(b, "tag_type", "tag_type").value_or(""),
                                  object_field_text(b, "query", "query"), object_field_text(b, "order", "order")});
    });

    // 8. add an OTA log
    route("POST", "/v2/upgrade/ota-log", [](Call& c) {
      const std::string& op = c.member();
      const auto& b = c.body();
      return c.write("task_log_add", {op, required_field(b, "task_id", "task_id"), required_field(b, "device_id", "device_id"),
                                      scalar_field(b, "status", "status").value_or(""),
                                      scalar_field(b, "device_mac", "device_mac").value_or(""),
                                      scalar_field(b, "device_sn", "device_sn").value_or("")});
    });

    // 9. query the OTA logs
    route("POST", "/v2/upgrade/ota-logs", [](Call& c) {
      const auto& b = c.body();
      std::string offset = scalar_field(b, "offset", "offset").value_or("");
      std::string limit = scalar_field(b, "limit", "limit").value_or("");
      if (!offset.empty()) bounded_integer(offset, 0, kMaxOffset, "offset");
      if (!limit.empty()) bounded_integer(limit, 1, kMaxLimit, "limit");
      std::string filter;
      if (auto f = b.FindMember("filter"); f != b.MemberEnd() && !f->value.IsNull()) {
        if (!f->value.IsArray()) throw ApiError(400, "invalid filter: expected an array of field names");
        for (const auto& e : f->value.GetArray()) {
          if (!e.IsString() || e.GetStringLength() == 0 ||
              std::string(e.GetString(), e.GetStringLength()).find_first_of(",\0", 0, 2) != std::string::npos)
            throw ApiError(400, "invalid filter: expected an array of field names");
          if (!filter.empty()) filter += ',';
          filter.append(e.GetString(), e.GetStringLength());
        }
      }
      return c.read("task_log_query", {offset, limit, filter, object_field_text(b, "query", "query"),
                                       object_field_text(b, "order", "order")});
    });

    // 10. test -> production
    route("PUT", base + "tasks/" + task_re + "/product-tag", [](Call& c) {
      const std::string& op = c.member();
      const auto& b = c.body();
      c.devices_field = "scope.device_list";
      std::vector<std::string> args{op, c.path_arg(1)};
      for (const char* f : {"name", "description"}) {
        if (auto v = scalar_field(b, f, f)) {
          args.push_back(f);
          args.push_back(*v);
        }
      }
      if (auto scope = b.FindMember("scope"); scope != b.MemberEnd() && !scope->value.IsNull()) {
        if (!scope->value.IsObject()) throw ApiError(400, "invalid scope: expected an object");
        std::string cat = required_field(scope->value, "category", "scope.category");
        args.push_back("scope_category");
        args.push_back(cat);
        auto list = id_list_field(scope->value, "device_list", "scope.device_list");
        if (list && (cat != "0" || !list->empty())) {
          args.push_back("devices");
          args.push_back(*list);
        }
      }
      return c.write("task_to_production", args);
    });

    // 11. submit for review
    route("PUT", base + "tasks/" + task_re + "/submit-audit", [](Call& c) {
      const std::string& op = c.member();
      return c.write("task_submit", {op, c.path_arg(1), required_field(c.body(), "audit_member_id", "audit_member_id")});
    });

    // 12. review: only the named reviewer (the script compares the token's member with it)
    route("PUT", base + "tasks/" + task_re + "/audit", [](Call& c) {
      const std::string& op = c.member();
      std::string r = required_field(c.body(), "audit_result", "audit_result");
      if (r != "1" && r != "2") throw ApiError(400, "invalid audit_result: 1 (approve) or 2 (reject)");
      return c.write("task_review", {op, c.path_arg(1), r == "1" ? "approve" : "reject"});
    });

    // 13. change a test task's devices
    route("PUT", base + "tasks/" + task_re + "/devices", [](Call& c) {
      const std::string& op = c.member();
      const auto& b = c.body();
      c.devices_field = "device_list";
      std::string opt = required_field(b, "opt", "opt");
      const char* mode = opt == "1" ? "add" : opt == "2" ? "remove" : opt == "3" ? "replace" : nullptr;
      if (!mode) throw ApiError(400, "invalid opt: 1 (add), 2 (remove) or 3 (replace)");
      auto list = id_list_field(b, "device_list", "device_list");
      if (!list) throw ApiError(400, "missing field device_list");
      return c.write("task_devices", {op, c.path_arg(1), mode, *list});
    });

    // console: a task's progress (task show's numbers)
    route("GET", base + "tasks/" + task_re + "/progress", [](Call& c) {
      auto task = parse_reply_json(c.read("task_get", {c.path_arg(1), "1"}));
      rapidjson::Document out(rapidjson::kObjectType);
      auto& a = out.GetAllocator();
      out.AddMember("task_id", rapidjson::Value(task["id"], a), a);
      out.AddMember("status", rapidjson::Value(task["status"], a), a);
      out.AddMember("devices_by_state", rapidjson::Value(task["devices_by_state"], a), a);
      return write_json(out);
    });

    // 15. operation log
    route("GET", base + "tasks/" + task_re + "/op-logs", [](Call& c) {
      return c.read("task_oplog", {c.path_arg(1), c.query_int("offset", 0, kMaxOffset), c.query_int("limit", 1, kMaxLimit)});
    });

    // 14. get
    route("GET", base + "tasks/" + task_re, [](Call& c) { return c.read("task_get", {c.path_arg(1), "0"}); });

    // 16. version distribution: task versions' {"total","versions":[{version,count,percent}]} in the
    // seed's words {"total","ratios":[{devices,firmware_version}]} (percent kept)
    route("GET", "/v2/statistics/ota/customize-task/" + task_re + "/device-firmware-version", [](Call& c) {
      auto v = parse_reply_json(c.read("task_versions", {c.path_arg(1)}));
      rapidjson::Document out(rapidjson::kObjectType);
      auto& a = out.GetAllocator();
      rapidjson::Value ratios(rapidjson::kArrayType);
      for (auto& row : v["versions"].GetArray()) {
        rapidjson::Value r(rapidjson::kObjectType);
        r.AddMember("devices", rapidjson::Value(row["count"], a), a);
        r.AddMember("firmware_version", rapidjson::Value(row["version"], a), a);
        r.AddMember("percent", rapidjson::Value(row["percent"], a), a);
        ratios.PushBack(r, a);
      }
      out.AddMember("total", rapidjson::Value(v["total"], a), a);
      out.AddMember("ratios", ratios, a);
      return write_json(out);
    });

    // console: products and devices
    route("GET", "/v2/products", [](Call& c) {
      return c.read("product_page", {c.query_int("offset", 0, kMaxOffset), c.query_int("limit", 1, kMaxLimit)});
    });
    route("GET", R"(/v2/products/([^/]+)/devices)", [](Call& c) {
      return c.read("device_page",
                    {c.path_arg(1), c.query_int("offset", 0, kMaxOffset), c.query_int("limit", 1, kMaxLimit), ""});
    });
    route("PUT", R"(/v2/products/([^/]+)/devices/([^/]+)/enabled)", [](Call& c) {
      c.member();
      auto it = c.body().FindMember("enabled");
      if (it == c.body().MemberEnd()) throw ApiError(400, "missing field enabled");
      if (!it->value.IsBool()) throw ApiError(400, "invalid enabled: expected true or false");
      // the CLI's device enable / disable (brokers disconnect a disabled device), then the console's shape
      c.write("device_set_enabled", {c.path_arg(1), c.path_arg(2), it->value.GetBool() ? "1" : "0"});
      return c.read("device_page", {c.path_arg(1), "", "", c.path_arg(2)});
    });
  }

  void configure() {
    // Every worker thread holds one keep-alive connection at a time: the pool is the connection limit.
    size_t threads = opt.threads;
    http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
    http.set_keep_alive_max_count(1000000);
    http.set_payload_max_length(opt.max_body);
    http.set_tcp_nodelay(true);
    http.set_read_timeout(10, 0);
    http.set_write_timeout(10, 0);
    http.set_pre_routing_handler([](const httplib::Request&, httplib::Response&) {
      tl_request_start = Clock::now();
      return httplib::Server::HandlerResponse::Unhandled;
    });
    // JSON for the errors httplib answers itself (unknown route, 413, malformed HTTP)
    http.set_error_handler(httplib::Server::HandlerWithResponse([](const httplib::Request&, httplib::Response& res) {
      if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
      res.set_content(error_body(res.status, status_message(res.status)), "application/json; charset=utf-8");
      return httplib::Server::HandlerResponse::Handled;
    }));
    http.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
      res.status = 500;
      res.set_content(error_body(500, "internal error"), "application/json; charset=utf-8");
    });
    // One line per request: method, path (never the query string or a header), status, milliseconds.
    http.set_logger([](const httplib::Request& req, const httplib::Response& res) {
      double ms = std::chrono::duration<double, std::milli>(Clock::now() - tl_request_start).count();
      char line[600];
      int n = std::snprintf(line, sizeof line, "iotgate-api: %.10s %.400s %d %.1fms\n", req.method.c_str(),
                            req.path.c_str(), res.status, ms);
      if (n > 0) (void)!::write(2, line, std::min(static_cast<size_t>(n), sizeof line - 1));
    });
    if (!opt.web_dir.empty() && !http.set_mount_point("/", opt.web_dir))
      throw std::runtime_error("cannot serve " + opt.web_dir);
    add_routes();
  }
};

ApiServer::ApiServer(ApiOptions options) : impl_(std::make_unique<Impl>(std::move(options))) { impl_->configure(); }
ApiServer::~ApiServer() = default;

bool ApiServer::bind() {
  if (impl_->opt.port != 0) {
    if (!impl_->http.bind_to_port(impl_->opt.host, impl_->opt.port)) return false;
  } else {
    int port = impl_->http.bind_to_any_port(impl_->opt.host);  // port 0: the system picks one
    if (port <= 0) return false;
    impl_->opt.port = port;
  }
  return impl_->http.widen_backlog(SOMAXCONN);
}
int ApiServer::port() const { return impl_->opt.port; }
void ApiServer::run() { impl_->http.listen_after_bind(); }
void ApiServer::stop() { impl_->http.stop(); }

}  // namespace iotgate::api
