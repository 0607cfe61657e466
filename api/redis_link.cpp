#include "redis_link.h"

#include <hiredis/hiredis.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <cerrno>
#include <string_view>

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

// Whether the server closed an idle connection (EOF), or sent what nobody asked for: then it is no use.
bool peer_closed(const redisContext* c) {
  pollfd p{c->fd, POLLIN, 0};
  if (::poll(&p, 1, 0) <= 0) return false;
  char byte;
  ssize_t n = ::recv(c->fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return !(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR));
}

// A server that is no primary any more (a failover demoted it, READONLY), a replica cut off from it (MASTERDOWN), or
// a primary cut off from the replicas min-replicas-to-write asks for (NOREPLICAS): Redis being away for this link,
// which reconnects (asking the sentinels again).
bool not_serving(const redisReply* r) {
  if (r->type != REDIS_REPLY_ERROR) return false;
  std::string_view e(r->str, r->len);
  return e.rfind("READONLY ", 0) == 0 || e.rfind("MASTERDOWN ", 0) == 0 || e.rfind("NOREPLICAS ", 0) == 0;
}

// Moves "[USER:]PASSWORD@" from the front of `rest` into `out` (redis-cli reads a lone credential as the password).
void take_credentials(std::string& rest, RedisUri& out) {
  auto at = rest.rfind('@');
  if (at == std::string::npos) return;
  std::string cred = rest.substr(0, at);
  rest = rest.substr(at + 1);
  if (auto colon = cred.find(':'); colon != std::string::npos) {
    out.user = cred.substr(0, colon);
    out.password = cred.substr(colon + 1);
  } else {
    out.password = cred;
  }
}

// sentinel://[[USER]:PASSWORD@]HOST[:PORT][,HOST[:PORT]...]/MASTERNAME[/DB]
RedisUri parse_sentinel_uri(std::string rest) {
  RedisUri out;
  if (auto q = rest.find('?'); q != std::string::npos) rest.resize(q);
  take_credentials(rest, out);  // a master name has no '@'
  auto slash = rest.find('/');
  if (slash == std::string::npos) throw std::invalid_argument("a sentinel URI names its master: sentinel://HOST:PORT/MASTERNAME");
  std::string why;
  auto sentinels = parse_host_ports(rest.substr(0, slash), kSentinelPort, &why);
  if (!sentinels) throw std::invalid_argument("invalid sentinel " + why);
  out.sentinels = std::move(*sentinels);
  std::string path = rest.substr(slash + 1);
  if (auto db = path.find('/'); db != std::string::npos) {
    std::string number = path.substr(db + 1);
    path.resize(db);
    if (!number.empty() && !to_int(number, out.db, 0, 1000000)) throw std::invalid_argument("invalid database number");
  }
  if (!valid_master_name(path)) throw std::invalid_argument("invalid master name (1-128 characters, no spaces, '/', ',' or '@')");
  out.master_name = path;
  out.host.clear();
  out.port = 0;
  return out;
}

}  // namespace

RedisUri parse_redis_uri(const std::string& uri) {
  const std::string sentinel = "sentinel://";
  if (uri.compare(0, sentinel.size(), sentinel) == 0) return parse_sentinel_uri(uri.substr(sentinel.size()));
  const std::string scheme = "redis://";
  if (uri.compare(0, scheme.size(), scheme) != 0)
    throw std::invalid_argument("a Redis URI starts with redis:// (or sentinel://)");
  std::string rest = uri.substr(scheme.size());
  RedisUri out;
  if (auto q = rest.find('?'); q != std::string::npos) rest.resize(q);
  if (auto slash = rest.find('/'); slash != std::string::npos) {
    std::string db = rest.substr(slash + 1);
    rest.resize(slash);
    if (!db.empty() && !to_int(db, out.db, 0, 1000000)) throw std::invalid_argument("invalid database number");
  }
  take_credentials(rest, out);
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

std::string describe(const RedisUri& uri) {
  if (uri.sentinels.empty()) return to_string(HostPort{uri.host, uri.port});
  std::string out = "sentinel master " + uri.master_name + " via ";
  for (size_t i = 0; i < uri.sentinels.size(); ++i) out += (i ? "," : "") + to_string(uri.sentinels[i]);
  return out;
}

void ReplyDeleter::operator()(redisReply* r) const {
  if (r) freeReplyObject(r);
}

RedisLink::RedisLink(RedisUri uri, std::chrono::milliseconds connect_timeout, std::chrono::milliseconds command_timeout)
    : uri_(std::move(uri)), connect_timeout_(connect_timeout), command_timeout_(command_timeout) {
  if (!uri_.sentinels.empty()) sentinel_.emplace(uri_.sentinels, uri_.master_name, uri_.password);
}

RedisLink::~RedisLink() { drop(); }

void RedisLink::drop() {
  if (ctx_) redisFree(ctx_);
  ctx_ = nullptr;
}

void RedisLink::connect() {
  if (!sentinel_) return connect_to(HostPort{uri_.host, uri_.port});
  // Asked at every connection, so a link dropped by a failover finds the new primary.
  std::string error;
  bool ok = sentinel_->resolve(connect_timeout_,
                               [this](const HostPort& at, std::string* why) {
                                 try {
                                   connect_to(at);
                                   Reply role = std::move(exchange({{"ROLE"}}).front());
                                   if (role_of(role.get()) == "master") return true;
                                   *why = "not a primary (ROLE " + role_of(role.get()) + ")";
                                 } catch (const RedisUnavailable& e) {
                                   *why = e.what();
                                 }
                                 drop();
                                 return false;
                               },
                               &error);
  if (!ok) throw RedisUnavailable(error);
  next_check_ = std::chrono::steady_clock::now() + kSentinelCheck;
}

void RedisLink::connect_to(const HostPort& at) {
  drop();
  ctx_ = redisConnectWithTimeout(at.host.c_str(), at.port, to_timeval(connect_timeout_));
  if (!ctx_ || ctx_->err) {
    std::string why = ctx_ ? ctx_->errstr : "out of memory";
    drop();
    throw RedisUnavailable("cannot connect to Redis " + to_string(at) + ": " + why);
  }
  redisSetTimeout(ctx_, to_timeval(command_timeout_));
  at_ = at;
  std::vector<std::vector<std::string>> setup;
  if (!uri_.password.empty()) {
    if (uri_.user.empty()) setup.push_back({"AUTH", uri_.password});
    else setup.push_back({"AUTH", uri_.user, uri_.password});
  }
  if (uri_.db != 0) setup.push_back({"SELECT", std::to_string(uri_.db)});
  if (setup.empty()) return;
  for (auto& reply : exchange(setup)) {
    if (reply->type == REDIS_REPLY_ERROR) {
      std::string why(reply->str, reply->len);
      drop();
      throw RedisUnavailable("Redis refused the connection setup: " + why);
    }
  }
}

std::vector<Reply> RedisLink::pipeline(const std::vector<std::vector<std::string>>& commands) {
  if (ctx_ && peer_closed(ctx_)) drop();
  if (ctx_ && sentinel_ && std::chrono::steady_clock::now() >= next_check_) {
    next_check_ = std::chrono::steady_clock::now() + kSentinelCheck;
    if (sentinel_->still_names(at_, connect_timeout_) == false) drop();
  }
  if (!ctx_) connect();
  std::vector<Reply> replies = exchange(commands);
  for (const auto& reply : replies) {
    if (not_serving(reply.get())) {
      std::string why(reply->str, reply->len);
      drop();
      throw RedisUnavailable("Redis is not a primary that serves: " + why.substr(0, why.find(' ')));
    }
  }
  return replies;
}

std::vector<Reply> RedisLink::exchange(const std::vector<std::vector<std::string>>& commands) {
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
