// Service accounts: logins with a mosquitto_passwd hash, and ACL rules "read|write|readwrite FILTER" with %u / %c.
#include "iotgate/accounts/accounts.h"

#include "iotgate/ids.h"

namespace iotgate {
namespace {
std::string substitute(std::string_view filter, std::string_view client_id, std::string_view username, bool& ok) {
  std::string out;
  out.reserve(filter.size() + 32);
  ok = true;
  for (size_t i = 0; i < filter.size(); ++i) {
    if (filter[i] == '%' && i + 1 < filter.size() && (filter[i + 1] == 'u' || filter[i + 1] == 'c')) {
      std::string_view value = filter[i + 1] == 'u' ? username : client_id;
      if (!is_topic_level_safe(value)) ok = false;
      out.append(value);
      ++i;
    } else {
      out.push_back(filter[i]);
    }
  }
  return out;
}
}  // namespace

std::optional<AccountRule> parse_account_rule(std::string_view text) {
  size_t space = text.find(' ');
  if (space == std::string_view::npos) return std::nullopt;
  std::string_view access = text.substr(0, space), filter = text.substr(space + 1);
  AccountRule rule;
  if (access == "read") rule.read = true;
  else if (access == "write") rule.write = true;
  else if (access == "readwrite") rule.read = rule.write = true;
  else return std::nullopt;
  if (!is_valid_filter(filter) || filter.front() == ' ' || filter.back() == ' ') return std::nullopt;
  rule.filter = std::string(filter);
  rule.substitutes = filter.find('%') != std::string_view::npos;
  if (rule.substitutes || filter.find('+') != std::string_view::npos) rule.shape = AccountRule::Shape::levels;
  else if (filter == "#") rule.shape = AccountRule::Shape::all;
  else if (filter.back() == '#') rule.shape = AccountRule::Shape::subtree;  // a valid filter: "X/#"
  else rule.shape = AccountRule::Shape::exact;
  return rule;
}

namespace {
// The X of a subtree rule "X/#".
std::string_view subtree_stem(const AccountRule& rule) {
  return std::string_view(rule.filter.data(), rule.filter.size() - 2);
}

// A rule of a common shape, matched by comparing a prefix (the same answers as topic_matches, which the fuzzers
// check).
bool shape_matches(const AccountRule& rule, TopicText topic) {
  switch (rule.shape) {
    case AccountRule::Shape::exact:
      return topic == rule.filter;
    case AccountRule::Shape::subtree:
      return in_subtree(subtree_stem(rule), topic);
    case AccountRule::Shape::all:
      return topic.front_or_nul() != '$';
    case AccountRule::Shape::levels:
      break;
  }
  return topic_matches(rule.filter, topic.view());
}
}  // namespace

bool in_subtree(std::string_view stem, TopicText topic) {
  auto rest = topic.after(stem);
  return rest && (rest->empty() || rest->front_or_nul() == '/');
}

std::optional<std::string_view> read_subtree_stem(const Account& account) {
  for (const AccountRule& rule : account.rules)
    if (rule.read && !rule.substitutes && rule.shape == AccountRule::Shape::subtree)
      return subtree_stem(rule);
  return std::nullopt;
}

bool account_allows(const Account& account, const char* client_id, const char* username, Access access,
                    TopicText topic) {
  if (access == Access::unsubscribe || account.superuser) return true;
  for (const AccountRule& rule : account.rules) {
    if (access == Access::write ? !rule.write : !rule.read) continue;
    if (access != Access::subscribe && !rule.substitutes) {
      if (shape_matches(rule, topic)) return true;
      continue;
    }
    std::string_view filter = rule.filter;
    std::string substituted;
    if (rule.substitutes) {
      bool ok = false;
      substituted = substitute(filter, client_id, username ? username : "", ok);
      if (!ok) continue;  // an id with + # / cannot widen a rule
      filter = substituted;
    }
    if (access == Access::subscribe ? filter_within(filter, topic.view()) : topic_matches(filter, topic.view()))
      return true;
  }
  return false;
}

std::optional<Resolution> AccountsModule::resolve(std::string_view cid, std::string_view username,
                                                  PasswordArg password) {
  std::string name(username);
  if (const Account* a = gate_.registry.account(name)) {
    if (gate_.config.bind_account_client_ids && !client_id_bound_to(cid, name))
      return Resolution{std::nullopt, {"client-id-unbound", "client id is not '" + name + "' or '" + name + ":...'"}};
    if (password) {
      if (!*password || !a->password_hash) return Resolution{std::nullopt, {"wrong-password", "wrong password"}};
      if (!gate_.passwords.verify("account:" + name, *a->password_hash, **password))
        return Resolution{std::nullopt, {"wrong-password", "wrong password"}};
    }
    Identity id;
    id.kind = SessionKind::account;
    id.account = name;
    return Resolution{id, {}};
  }
  return std::nullopt;
}

}  // namespace iotgate
