#include "iotgate/sentinel.h"

#include <sys/time.h>

#include <charconv>
#include <memory>

namespace iotgate {
namespace {

timeval to_timeval(std::chrono::milliseconds ms) {
  return timeval{static_cast<time_t>(ms.count() / 1000), static_cast<suseconds_t>((ms.count() % 1000) * 1000)};
}

bool parse_port(std::string_view s, int& out) {
  int v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || v < 1 || v > 65535) return false;
  out = v;
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool valid_host(std::string_view h) {
  if (h.empty() || h.size() > 255) return false;
  for (char c : h)
    if (c <= ' ' || c > '~' || c == '/' || c == '@' || c == ',' || c == '[' || c == ']') return false;
  return true;
}

using Reply = std::unique_ptr<redisReply, decltype(&freeReplyObject)>;
using Context = std::unique_ptr<redisContext, decltype(&redisFree)>;

Reply run(redisContext* c, const std::vector<std::string>& argv) {
  std::vector<const char*> args;
  std::vector<size_t> lens;
  for (const auto& a : argv) {
    args.push_back(a.data());
    lens.push_back(a.size());
  }
  return Reply(static_cast<redisReply*>(redisCommandArgv(c, static_cast<int>(argv.size()), args.data(), lens.data())),
               freeReplyObject);
}

std::string text(const redisReply* r) { return std::string(r->str, r->len); }

}  // namespace

std::string to_string(const HostPort& at) {
  bool v6 = at.host.find(':') != std::string::npos;
  return (v6 ? "[" + at.host + "]" : at.host) + ":" + std::to_string(at.port);
}

std::optional<std::vector<HostPort>> parse_host_ports(std::string_view list, int default_port, std::string* why) {
  std::vector<HostPort> out;
  auto bad = [&](std::string_view entry, const char* reason) {
    if (why) *why = "\"" + std::string(entry) + "\": " + reason;
    return std::nullopt;
  };
  size_t start = 0;
  while (true) {
    size_t comma = list.find(',', start);
    std::string_view entry = trim(list.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start));
    if (entry.empty()) return bad(entry, "empty entry (HOST:PORT,HOST:PORT,...)");
    HostPort at{"", default_port};
    std::string_view port;
    if (entry.front() == '[') {
      size_t close = entry.find(']');
      if (close == std::string_view::npos) return bad(entry, "unclosed [");
      at.host = std::string(entry.substr(1, close - 1));
      std::string_view rest = entry.substr(close + 1);
      if (!rest.empty()) {
        if (rest.front() != ':') return bad(entry, "expected :PORT after ]");
        port = rest.substr(1);
        if (port.empty()) return bad(entry, "empty port");
      }
      if (at.host.empty() || at.host.find_first_not_of("0123456789abcdefABCDEF:.%") != std::string::npos)
        return bad(entry, "not an IPv6 address in [ ]");
    } else {
      size_t colon = entry.find(':');
      if (colon != std::string_view::npos && entry.find(':', colon + 1) != std::string_view::npos)
        return bad(entry, "write an IPv6 address as [ADDRESS]:PORT");
      at.host = std::string(entry.substr(0, colon));
      if (colon != std::string_view::npos) {
        port = entry.substr(colon + 1);
        if (port.empty()) return bad(entry, "empty port");
      }
      if (!valid_host(at.host)) return bad(entry, "invalid host");
    }
    if (!port.empty() && !parse_port(port, at.port)) return bad(entry, "port must be 1-65535");
    out.push_back(std::move(at));
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return out;
}

bool valid_master_name(std::string_view name) {
  if (name.empty() || name.size() > 128) return false;
  for (char c : name)
    if (c <= ' ' || c > '~' || c == '/' || c == ',' || c == '@') return false;
  return true;
}

std::string role_of(const redisReply* r) {
  if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 1) return "";
  const redisReply* first = r->element[0];
  if (first->type != REDIS_REPLY_STRING && first->type != REDIS_REPLY_STATUS) return "";
  return text(first);
}

SentinelResolver::SentinelResolver(std::vector<HostPort> sentinels, std::string master_name, std::string password)
    : sentinels_(std::move(sentinels)), master_name_(std::move(master_name)), password_(std::move(password)) {}

SentinelResolver::~SentinelResolver() { drop_kept(); }

void SentinelResolver::drop_kept() {
  if (kept_) redisFree(kept_);
  kept_ = nullptr;
}

std::optional<HostPort> SentinelResolver::ask(const HostPort& sentinel, std::chrono::milliseconds timeout,
                                              std::string* why) const {
  Context c(redisConnectWithTimeout(sentinel.host.c_str(), sentinel.port, to_timeval(timeout)), redisFree);
  if (!c || c->err) {
    *why = c ? c->errstr : "out of memory";
    return std::nullopt;
  }
  redisSetTimeout(c.get(), to_timeval(timeout));
  return ask_on(c.get(), why);
}

std::optional<HostPort> SentinelResolver::ask_on(redisContext* c, std::string* why) const {
  const std::vector<std::string> question = {"SENTINEL", "get-master-addr-by-name", master_name_};
  Reply r = run(c, question);
  if (r && r->type == REDIS_REPLY_ERROR && text(r.get()).rfind("NOAUTH", 0) == 0 && !password_.empty()) {
    Reply auth = run(c, {"AUTH", password_});
    if (!auth || auth->type == REDIS_REPLY_ERROR) {
      *why = "AUTH refused";  // never echo the password
      return std::nullopt;
    }
    r = run(c, question);
  }
  if (!r) {
    *why = c->errstr;
    return std::nullopt;
  }
  if (r->type == REDIS_REPLY_ERROR) {
    *why = text(r.get());
    return std::nullopt;
  }
  if (r->type == REDIS_REPLY_NIL) {
    *why = "knows no master named " + master_name_;
    return std::nullopt;
  }
  HostPort at;
  if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || r->element[0]->type != REDIS_REPLY_STRING ||
      r->element[1]->type != REDIS_REPLY_STRING || !parse_port(text(r->element[1]), at.port)) {
    *why = "unexpected answer to SENTINEL get-master-addr-by-name";
    return std::nullopt;
  }
  at.host = text(r->element[0]);
  return at;
}

std::optional<bool> SentinelResolver::still_names(const HostPort& primary, std::chrono::milliseconds timeout) {
  if (sentinels_.empty()) return std::nullopt;
  if (!kept_) {
    kept_index_ = first_;
    const HostPort& s = sentinels_[kept_index_];
    kept_ = redisConnectWithTimeout(s.host.c_str(), s.port, to_timeval(timeout));
    if (!kept_ || kept_->err) {
      drop_kept();
      first_ = (first_ + 1) % sentinels_.size();
      return std::nullopt;
    }
    redisSetTimeout(kept_, to_timeval(timeout));
  }
  std::string why;
  std::optional<HostPort> at = ask_on(kept_, &why);
  if (!at) {
    drop_kept();
    first_ = (kept_index_ + 1) % sentinels_.size();
    return std::nullopt;
  }
  if (*at == primary) return true;
  first_ = kept_index_;  // the resolve() that follows starts with the sentinel that names the new primary
  return false;
}

bool SentinelResolver::resolve(std::chrono::milliseconds timeout, const TryPrimary& try_primary, std::string* error) {
  std::string said;
  for (size_t i = 0; i < sentinels_.size(); ++i) {
    size_t n = (first_ + i) % sentinels_.size();
    const HostPort& sentinel = sentinels_[n];
    std::string why;
    std::optional<HostPort> at = ask(sentinel, timeout, &why);
    if (at && try_primary(*at, &why)) {
      if (kept_ && kept_index_ != n) drop_kept();  // still_names() asks the sentinel that named this primary
      first_ = n;
      primary_ = *at;
      answered_ = sentinel;
      return true;
    }
    said += (said.empty() ? "" : "; ") + std::string("sentinel ") + to_string(sentinel) + ": " +
            (at ? "primary " + to_string(*at) + ": " : std::string()) + why;
  }
  if (error) *error = "no sentinel led to a primary for master " + master_name_ + " (" + said + ")";
  return false;
}

}  // namespace iotgate
