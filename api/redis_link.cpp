#include "redis_link.h"

#include <hiredis/hiredis.h>
#include <sys/time.h>

#include <charconv>

namespace iotgate::api {

namespace {
bool to_int(const std::string& s, int& out, int lo, int hi) {
  int v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || v < lo || v > hi) return false;
  out = v;
  return true;
}
timeval to_timeval(std::chrono::milliseconds ms) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(ms.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((ms.count() % 1000) * 1000);
  return tv;
}
}  // namespace

RedisUri parse_redis_uri(const std::string& uri) {
  const std::string scheme = "redis://";
  if (uri.compare(0, scheme.size(), scheme) != 0) throw std::invalid_argument("a Redis URI starts with redis://");
  std::string rest = uri.substr(scheme.size());
  RedisUri out;
  if (auto q = rest.find('?'); q != std::string::npos) rest.resize(q);
  if (auto slash = rest.find('/'); slash != std::string::npos) {
    std::string db = rest.substr(slash + 1);
    rest.resize(slash);
    if (!db.empty() && !to_int(db, out.db, 0, 1000000)) throw std::invalid_argument("invalid database number");
  }
  if (auto at = rest.rfind('@'); at != std::string::npos) {
    std::string cred = rest.substr(0, at);
    rest = rest.substr(at + 1);
    if (auto colon = cred.find(':'); colon != std::string::npos) {
      out.user = cred.substr(0, colon);
      out.password = cred.substr(colon + 1);
    } else {
      out.password = cred;  // redis-cli reads a lone credential as the password
    }
  }
  if (!rest.empty() && rest.front() == '[') {  // [IPv6]:port
    auto close = rest.find(']');
    if (close == std::string::npos) throw std::invalid_argument("unclosed [ in host");
    out.host = rest.substr(1, close - 1);
    rest = rest.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':' || !to_int(rest.substr(1), out.port, 1, 65535)) throw std::invalid_argument("invalid port");
    }
  } else if (auto colon = rest.rfind(':'); colon != std::string::npos) {
    if (!to_int(rest.substr(colon + 1), out.port, 1, 65535)) throw std::invalid_argument("invalid port");
    out.host = rest.substr(0, colon);
  } else if (!rest.empty()) {
    out.host = rest;
  }
  if (out.host.empty()) out.host = "127.0.0.1";
  return out;
}

void ReplyDeleter::operator()(redisReply* r) const {
  if (r) freeReplyObject(r);
}

RedisLink::RedisLink(RedisUri uri, std::chrono::milliseconds connect_timeout, std::chrono::milliseconds command_timeout)
    : uri_(std::move(uri)), connect_timeout_(connect_timeout), command_timeout_(command_timeout) {}

RedisLink::~RedisLink() { drop(); }

void RedisLink::drop() {
  if (ctx_) redisFree(ctx_);
  ctx_ = nullptr;
}

void RedisLink::connect() {
  ctx_ = redisConnectWithTimeout(uri_.host.c_str(), uri_.port, to_timeval(connect_timeout_));
  if (!ctx_ || ctx_->err) {
    std::string why = ctx_ ? ctx_->errstr : "out of memory";
    drop();
    throw RedisUnavailable("cannot connect to Redis: " + why);
  }
  redisSetTimeout(ctx_, to_timeval(command_timeout_));
  std::vector<std::vector<std::string>> setup;
  if (!uri_.password.empty()) {
    if (uri_.user.empty()) setup.push_back({"AUTH", uri_.password});
    else setup.push_back({"AUTH", uri_.user, uri_.password});
  }
  if (uri_.db != 0) setup.push_back({"SELECT", std::to_string(uri_.db)});
  if (setup.empty()) return;
  for (auto& reply : pipeline(setup)) {
    if (reply->type == REDIS_REPLY_ERROR) {
      std::string why(reply->str, reply->len);
      drop();
      throw RedisUnavailable("Redis refused the connection setup: " + why);
    }
  }
}

std::vector<Reply> RedisLink::pipeline(const std::vector<std::vector<std::string>>& commands) {
  if (!ctx_) connect();
  for (const auto& argv : commands) {
    std::vector<const char*> ptrs;
    std::vector<size_t> lens;
    ptrs.reserve(argv.size());
    lens.reserve(argv.size());
    for (const auto& a : argv) {
      ptrs.push_back(a.data());
      lens.push_back(a.size());
    }
    if (redisAppendCommandArgv(ctx_, static_cast<int>(argv.size()), ptrs.data(), lens.data()) != REDIS_OK) {
      drop();
      throw RedisUnavailable("cannot queue a Redis command");
    }
  }
  std::vector<Reply> replies;
  replies.reserve(commands.size());
  for (size_t i = 0; i < commands.size(); ++i) {
    void* raw = nullptr;
    if (redisGetReply(ctx_, &raw) != REDIS_OK || !raw) {
      std::string why = ctx_->errstr;
      if (raw) freeReplyObject(raw);
      drop();
      throw RedisUnavailable("Redis connection failed: " + why);
    }
    replies.emplace_back(static_cast<redisReply*>(raw));
  }
  return replies;
}

Reply RedisLink::command(const std::vector<std::string>& argv) { return std::move(pipeline({argv}).front()); }

}  // namespace iotgate::api
