// Service accounts (back ends, operators' tools): a login by name with a mosquitto_passwd hash, and ACL rules
// "read|write|readwrite FILTER" where %u / %c stand for the username / client id. Everything accounts mean is in
// src/accounts/accounts.cpp.
#pragma once
#include <optional>
#include <string_view>

#include "iotgate/identity.h"
#include "iotgate/model.h"
#include "iotgate/protocol.h"

namespace iotgate {

// Parses "read FILTER", "write FILTER" or "readwrite FILTER"; nullopt when malformed.
std::optional<AccountRule> parse_account_rule(std::string_view text);

// The ACL of a service account: superuser, or its rules with %u / %c substituted.
// `client_id` and `username` (may be null) are NUL-terminated, read only for a rule with %u / %c.
bool account_allows(const Account& account, const char* client_id, const char* username, Access access,
                    TopicText topic);
// A read rule of `account` of the shape "X/#" (no %u / %c): its stem X, whose subtree the account may read; the
// first such rule, if any. The session index keeps it so that most read checks of an account are answered there.
std::optional<std::string_view> read_subtree_stem(const Account& account);
// True when `topic` lies in the subtree of `stem`: it is `stem`, or starts with `stem` + '/' (what "stem/#" matches).
bool in_subtree(std::string_view stem, TopicText topic);

// Accounts are no device protocol: the gate asks this module only to resolve logins; their sessions' ACL is
// account_allows (through the session index, see Gate::SessionSummary).
class AccountsModule final : public LoginResolver {
 public:
  explicit AccountsModule(GateContext& gate) : gate_(gate) {}
  // The login if `username` names an account (client id bound to it unless bind_account_client_ids is off).
  std::optional<Resolution> resolve(std::string_view client_id, std::string_view username,
                                    PasswordArg password) override;

 private:
  GateContext& gate_;
};

}  // namespace iotgate
