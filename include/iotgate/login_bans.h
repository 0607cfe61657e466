// Failed logins, and the bans they earn. Counted per (address, username) first, so that one client's failures lock
// out no other device behind the same NAT or load balancer; the whole address only when its failures span many
// usernames (spraying). Broker thread only.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "iotgate/config.h"

namespace iotgate {

class LoginBans {
 public:
  enum class Ban { none, username, address };
  explicit LoginBans(const Config& config) : config_(config) {}
  // Counts a failed login from `address` with `username`; says what that banned, if anything.
  Ban count_failure(const std::string& address, const std::string& username, int64_t now);
  // The ban, if any, that refuses a login from `address` with `username` now: its end and what it covers.
  std::optional<std::pair<int64_t, Ban>> ban_of(const std::string& address, const std::string& username,
                                                int64_t now) const;
  // How many bans are in force at `now` (an address's and each of its usernames' count apart).
  size_t active(int64_t now) const;
  // Forgets addresses whose window and ban are over.
  void forget_quiet(int64_t now);

 private:
  struct FailureCount {
    int64_t window_start = 0;
    int count = 0;
    int64_t banned_until = 0;
  };
  struct AddressFailures {
    FailureCount address;                 // banned_until: the whole address (spraying)
    std::vector<std::string> usernames;   // distinct usernames that failed in address.window_start's window
    std::unordered_map<std::string, FailureCount> by_username;
  };
  const Config& config_;
  std::unordered_map<std::string, AddressFailures> failures_;
};

}  // namespace iotgate
