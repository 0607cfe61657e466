#include "iotgate/login_bans.h"

#include <algorithm>
#include <iterator>

namespace iotgate {

std::optional<std::pair<int64_t, LoginBans::Ban>> LoginBans::ban_of(const std::string& address,
                                                                  const std::string& username, int64_t now) const {
  auto f = failures_.find(address);
  if (f == failures_.end()) return std::nullopt;
  if (f->second.address.banned_until > now) return std::pair{f->second.address.banned_until, Ban::address};
  auto u = f->second.by_username.find(username);
  if (u != f->second.by_username.end() && u->second.banned_until > now)
    return std::pair{u->second.banned_until, Ban::username};
  return std::nullopt;
}

LoginBans::Ban LoginBans::count_failure(const std::string& address, const std::string& username, int64_t now) {
  if (failures_.size() > 100000) forget_quiet(now);  // bound the table under a spray of addresses
  AddressFailures& f = failures_[address];
  if (now - f.address.window_start >= config_.auth_fail_window) {
    f.address.window_start = now;
    f.address.count = 0;
    f.usernames.clear();
  }
  ++f.address.count;
  if (static_cast<int>(f.usernames.size()) < config_.auth_spray_usernames &&
      std::find(f.usernames.begin(), f.usernames.end(), username) == f.usernames.end())
    f.usernames.push_back(username);
  if (f.address.count >= config_.auth_fail_limit &&
      static_cast<int>(f.usernames.size()) >= config_.auth_spray_usernames) {
    f.address.banned_until = now + config_.auth_ban_seconds;
    f.address.count = 0;
    f.usernames.clear();
    return Ban::address;
  }
  FailureCount& u = f.by_username[username];
  if (now - u.window_start >= config_.auth_fail_window) {
    u.window_start = now;
    u.count = 0;
  }
  if (++u.count < config_.auth_fail_limit) return Ban::none;
  u.banned_until = now + config_.auth_ban_seconds;
  u.count = 0;
  return Ban::username;
}

size_t LoginBans::active(int64_t now) const {
  size_t n = 0;
  for (const auto& [address, a] : failures_) {
    n += a.address.banned_until > now;
    for (const auto& [username, f] : a.by_username) n += f.banned_until > now;
  }
  return n;
}

void LoginBans::forget_quiet(int64_t now) {
  auto quiet = [&](const FailureCount& c) {
    return c.banned_until <= now && now - c.window_start >= config_.auth_fail_window;
  };
  for (auto it = failures_.begin(); it != failures_.end();) {
    std::erase_if(it->second.by_username, [&](const auto& entry) { return quiet(entry.second); });
    it = quiet(it->second.address) && it->second.by_username.empty() ? failures_.erase(it) : std::next(it);
  }
}

}  // namespace iotgate
