// fuzz_topics: the topic helpers (is_valid_topic, is_valid_filter, topic_matches, filter_within), the suffix
// classifiers of the three protocols, and the ACL of every session kind (device_session_allows, account_allows).
//
// Input: FLAGS P \0 F \0 T \0 ID1 \0 ID2 \0 RULE
//   P, F: filters (P the wider one when filter_within is checked); T: a topic, and the material that F's
//   wildcards are filled with to derive concrete topics; ID1, ID2: product and device of the sessions (taken when
//   they are one safe topic level, as a login guarantees, else fixture ids); RULE: an account rule
//   ("read FILTER" ...) for the account checks, with %u / %c; FLAGS bit 0: EMU namespace user instead of wudun;
//   bits 1-2: how many levels a '#' stands for when deriving topics; bit 3: the account is a superuser.
//
// Invariants (all for valid topics / filters, as mosquitto only asks about those):
//   - a valid topic is a valid filter, matches itself, and filter_within(t, t); filter_within is reflexive;
//   - a topic derived from a filter matches it (except a '$' topic under a leading wildcard, MQTT 4.7.2);
//   - soundness of filter_within: filter_within(P, F) and topic_matches(F, t) imply topic_matches(P, t);
//     for a topic F, filter_within(P, F) == topic_matches(P, F);
//   - a classified suffix is a valid topic without empty levels, and up/down are never both (one value);
//   - every session kind: unsubscribe always allowed; no topic both readable and writable; read(t) implies
//     subscribe(t); what a device session may read or write lies under its own prefix (the Lierda AUTH session
//     writes only /sys/device/auth); a filter it may subscribe to matches only topics under its prefix (or the
//     prefix's own level, which "prefix/#" matches); for AUTH, registration and EMU sessions a subscription gives
//     read access to every topic it matches (without empty levels); account sessions: no device rights;
//   - accounts: subscribe(f) implies read of every topic derived from f; a rule whose %u / %c stands for a
//     name that is not one safe topic level grants nothing; a superuser may do anything; the read stem the
//     session index keeps (read_subtree_stem, in_subtree) allows a read only where the rules do, and for the
//     account of that one rule exactly where they do.
#include <string>
#include <vector>

#include "fuzz_common.h"

using namespace iotgate;

namespace {

std::vector<std::string> split_levels(std::string_view s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    size_t slash = s.find('/', start);
    out.emplace_back(s.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start));
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  return out;
}

bool has_empty_level(std::string_view t) {
  for (const auto& l : split_levels(t))
    if (l.empty()) return true;
  return false;
}

std::string join(const std::vector<std::string>& levels) {
  std::string out;
  for (size_t i = 0; i < levels.size(); ++i) {
    if (i) out += '/';
    out += levels[i];
  }
  return out;
}

// Concrete topics matched by filter f: '+' takes a level of the material, '#' stands for `hash_levels` of them
// (0: the parent level, which "a/#" also matches). `shift` rotates through the material.
std::string derive(std::string_view f, const std::vector<std::string>& material, int hash_levels, size_t shift) {
  std::vector<std::string> out;
  size_t k = shift;
  auto next = [&] { return material.empty() ? std::string("x") : material[k++ % material.size()]; };
  for (const auto& level : split_levels(f)) {
    if (level == "+") out.push_back(next());
    else if (level == "#") {
      for (int i = 0; i < hash_levels; ++i) out.push_back(next());
    } else {
      out.push_back(level);
    }
  }
  if (out.empty()) return "";
  return join(out);
}

// Topic levels usable as wildcard values: the material's levels without + # NUL.
std::vector<std::string> material_of(std::string_view t) {
  std::vector<std::string> out;
  for (auto level : split_levels(t)) {
    std::string clean;
    for (char c : level)
      if (c != '+' && c != '#' && c != '\0') clean.push_back(c);
    out.push_back(clean);
  }
  return out;
}

bool expected_match(std::string_view f, std::string_view t) {
  return !(!t.empty() && t[0] == '$' && !f.empty() && (f[0] == '+' || f[0] == '#'));
}

void check_classifier(const char* name, Flow (*classify)(std::string_view), std::string_view s) {
  Flow flow = classify(s);
  if (flow == Flow::none) return;
  FUZZ_CHECK("classified-invalid-topic", is_valid_topic(s) && !has_empty_level(s) && s.find('\0') == std::string::npos,
             std::string(name) + " classified a suffix that is not a topic without empty levels: '" +
                 fuzz::printable(s) + "'");
}

Identity make(SessionKind kind, std::string product, std::string device, std::string prefix) {
  Identity id;
  id.kind = kind;
  id.product = std::move(product);
  id.device = std::move(device);
  id.prefix = std::move(prefix);
  id.openid = fuzz::kOpenid;
  return id;
}

void check_session(const Identity& id, const std::vector<std::string>& topics, const std::vector<std::string>& filters,
                   const std::vector<std::string>& material, int hash_levels) {
  auto who = [&] {
    return std::string(to_string(id.kind)) + " session with prefix '" + fuzz::printable(id.prefix) + "'";
  };
  const std::string parent = id.prefix.empty() ? "" : id.prefix.substr(0, id.prefix.size() - 1);
  for (const auto& t : topics) {
    if (!is_valid_topic(t)) continue;
    bool r = device_session_allows(id, Access::read, t), w = device_session_allows(id, Access::write, t),
         s = device_session_allows(id, Access::subscribe, t);
    FUZZ_CHECK("unsubscribe-denied", device_session_allows(id, Access::unsubscribe, t),
               who() + " may not unsubscribe from '" + fuzz::printable(t) + "'");
    if (id.kind == SessionKind::account)
      FUZZ_CHECK("account-device-rights", !r && !w && !s, who() + " has device rights on '" + fuzz::printable(t) + "'");
    FUZZ_CHECK("read-and-write", !(r && w), who() + " may both read and write '" + fuzz::printable(t) + "'");
    // Any ProductKey holder may open an AUTH session for any NodeEui: it reads nothing (its replies are direct).
    FUZZ_CHECK("auth-session-reads", !(r && id.kind == SessionKind::lierda_auth),
               who() + " may read '" + fuzz::printable(t) + "'");
    FUZZ_CHECK("read-not-subscribable", !r || s, who() + " may read but not subscribe to '" + fuzz::printable(t) + "'");
    FUZZ_CHECK("read-outside-prefix", !r || fuzz::starts_with(t, id.prefix),
               who() + " may read '" + fuzz::printable(t) + "' outside its prefix");
    bool auth_topic = id.kind == SessionKind::lierda_auth && t == kLierdaAuthTopic;
    FUZZ_CHECK("write-outside-prefix", !w || auth_topic || fuzz::starts_with(t, id.prefix),
               who() + " may write '" + fuzz::printable(t) + "' outside its prefix");
    // The broker's topics arrive as C strings, read only as far as a comparison needs: the same answers.
    std::string_view suffix = "unset";
    bool w_c = device_session_allows(id.kind, id.prefix, Access::write, t.c_str(), &suffix);
    FUZZ_CHECK("c-string-differs",
               w_c == w && device_session_allows(id, Access::read, t.c_str()) == r &&
                   device_session_allows(id, Access::subscribe, t.c_str()) == s,
               who() + " judges '" + fuzz::printable(t) + "' differently as a C string");
    if (w_c && !auth_topic)
      FUZZ_CHECK("write-suffix", suffix == std::string_view(t).substr(id.prefix.size()),
                 who() + " gave suffix '" + fuzz::printable(suffix) + "' for '" + fuzz::printable(t) + "'");
  }
  for (const auto& f : filters) {
    if (!is_valid_filter(f) || !device_session_allows(id, Access::subscribe, f)) continue;
    for (int hl = 0; hl < 3; ++hl) {
      for (size_t shift = 0; shift < 2; ++shift) {
        std::string t = derive(f, material, (hash_levels + hl) % 3, shift);
        if (!is_valid_topic(t) || !topic_matches(f, t)) continue;
        FUZZ_CHECK("subscribe-outside-prefix", fuzz::starts_with(t, id.prefix) || t == parent,
                   who() + " may subscribe to '" + fuzz::printable(f) + "', which matches '" + fuzz::printable(t) +
                       "' outside its prefix");
        bool exact = id.kind == SessionKind::krt_register || id.kind == SessionKind::emu_gateway;
        if (exact && !has_empty_level(t))
          FUZZ_CHECK("subscribed-not-readable", device_session_allows(id, Access::read, t),
                     who() + " may subscribe to '" + fuzz::printable(f) + "' but not read '" + fuzz::printable(t) + "'");
      }
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t flags = data[0];
  auto parts = fuzz::split_nul(std::string_view(reinterpret_cast<const char*>(data) + 1, size - 1), 6);
  const std::string &P = parts[0], &F = parts[1], &T = parts[2], &rule_text = parts[5];
  const int hash_levels = (flags >> 1) & 3;
  const std::vector<std::string> material = material_of(T);

  // --- topic and filter helpers -------------------------------------------------------------------------
  for (const std::string* x : {&P, &F, &T}) {
    const std::string& s = *x;
    bool vt = is_valid_topic(s), vf = is_valid_filter(s);
    if (vt) {
      FUZZ_CHECK("topic-not-filter", vf, "valid topic but not a valid filter: '" + fuzz::printable(s) + "'");
      FUZZ_CHECK("topic-not-self-match", topic_matches(s, s), "topic does not match itself: '" + fuzz::printable(s) + "'");
    }
    if (vf) FUZZ_CHECK("within-not-reflexive", filter_within(s, s), "filter not within itself: '" + fuzz::printable(s) + "'");
    check_classifier("classify_lierda_suffix", classify_lierda_suffix, s);
    check_classifier("classify_krt_suffix", classify_krt_suffix, s);
    check_classifier("classify_emu_suffix", classify_emu_suffix, s);
  }
  const bool p_ok = is_valid_filter(P), f_ok = is_valid_filter(F);
  std::vector<std::string> derived;
  if (f_ok) {
    for (int hl = 0; hl < 3; ++hl)
      for (size_t shift = 0; shift < 3; ++shift) {
        std::string t = derive(F, material, (hash_levels + hl) % 3, shift);
        if (!is_valid_topic(t)) continue;
        derived.push_back(t);
        FUZZ_CHECK("derived-no-match", topic_matches(F, t) == expected_match(F, t),
                   "filter '" + fuzz::printable(F) + "' vs derived topic '" + fuzz::printable(t) + "': topic_matches " +
                       std::to_string(topic_matches(F, t)));
      }
  }
  if (is_valid_topic(T)) derived.push_back(T);
  if (p_ok && f_ok) {
    bool within = filter_within(P, F);
    if (within) {
      for (const auto& t : derived)
        if (topic_matches(F, t))
          FUZZ_CHECK("within-unsound", topic_matches(P, t),
                     "filter_within('" + fuzz::printable(P) + "', '" + fuzz::printable(F) + "') but '" +
                         fuzz::printable(t) + "' matches only the second");
    }
    if (is_valid_topic(F))
      FUZZ_CHECK("within-vs-match", within == topic_matches(P, F),
                 "for the topic '" + fuzz::printable(F) + "', filter_within and topic_matches of '" + fuzz::printable(P) +
                     "' disagree");
  }

  // --- device sessions ----------------------------------------------------------------------------------
  std::string product = is_topic_level_safe(parts[3]) ? parts[3] : std::string("AA30C505");
  std::string dev = is_topic_level_safe(parts[4]) ? parts[4] : std::string("20MQTTJ000121");
  const char* ns = (flags & 1) ? "user" : "wudun";
  std::vector<Identity> ids = {
      make(SessionKind::lierda_auth, product, dev, lierda_prefix(fuzz::kOpenid, product, dev)),
      make(SessionKind::lierda_v2, product, dev, lierda_prefix(fuzz::kOpenid, product, dev)),
      make(SessionKind::krt_register, product, dev, krt_prefix(product, dev)),
      make(SessionKind::krt_device, product, dev, krt_prefix(product, dev)),
      make(SessionKind::emu_gateway, product, dev, emu_prefix(ns, product, dev)),
      make(SessionKind::account, "", "", ""),
  };
  // Topics worth asking about: the inputs, each session's prefix + the input (the fuzzer's suffixes), and the
  // topics derived from F.
  std::vector<std::string> topics = {P, F, T};
  std::vector<std::string> filters = {P, F};
  for (const auto& id : ids) {
    for (const std::string* x : {&P, &F, &T}) {
      topics.push_back(id.prefix + *x);
      filters.push_back(id.prefix + *x);
    }
  }
  for (const auto& t : derived) topics.push_back(t);
  for (const auto& id : ids) check_session(id, topics, filters, material, hash_levels);

  // --- accounts -----------------------------------------------------------------------------------------
  auto rule = parse_account_rule(rule_text);
  if (rule) {
    Account a;
    a.name = "fuzz";
    a.rules.push_back(*rule);
    a.superuser = flags & 8;
    // The client id and username take P and T when they are short and NUL-free, as the broker's names are (names
    // with + # / must not widen a rule).
    auto name_from = [](std::string_view s, const char* otherwise) {
      return std::string(s.size() <= 64 && s.find('\0') == std::string_view::npos ? s : otherwise);
    };
    const std::string cid_text = name_from(P, "cid"), user_text = name_from(T, "user");
    const std::string_view cid = cid_text, user = user_text;
    bool unsafe = (rule->filter.find("%c") != std::string::npos && !is_topic_level_safe(cid)) ||
                  (rule->filter.find("%u") != std::string::npos && !is_topic_level_safe(user));
    for (const auto& t : topics) {
      if (!is_valid_topic(t)) continue;
      for (Access access : {Access::read, Access::write, Access::subscribe}) {
        bool ok = account_allows(a, cid_text.c_str(), user_text.c_str(), access, t);
        FUZZ_CHECK("account-c-string-differs", account_allows(a, cid_text.c_str(), user_text.c_str(), access, t.c_str()) == ok,
                   "rule '" + fuzz::printable(rule_text) + "' judges '" + fuzz::printable(t) + "' differently as a C string");
        // A rule of a common shape is matched by prefix: the same answer as level by level.
        bool applies = access == Access::write ? rule->write : rule->read;
        if (!a.superuser && !rule->substitutes && access != Access::subscribe && applies)
          FUZZ_CHECK("rule-shape-differs", ok == topic_matches(rule->filter, t),
                     "rule '" + fuzz::printable(rule_text) + "' (shape " + std::to_string(static_cast<int>(rule->shape)) +
                         ") and topic_matches differ on '" + fuzz::printable(t) + "'");
        if (a.superuser) FUZZ_CHECK("superuser-denied", ok, "a superuser was denied '" + fuzz::printable(t) + "'");
        else if (unsafe)
          FUZZ_CHECK("unsafe-substitution", !ok,
                     "rule '" + fuzz::printable(rule_text) + "' with client id '" + fuzz::printable(cid) + "' / user '" +
                         fuzz::printable(user) + "' granted '" + fuzz::printable(t) + "'");
      }
      FUZZ_CHECK("account-unsubscribe", account_allows(a, cid_text.c_str(), user_text.c_str(), Access::unsubscribe, t), "unsubscribe denied");
      // The session index answers an account's reads from this stem alone (Gate::summary_reads): never more than
      // the rules allow, and exactly what the rule allows when it is the rule.
      if (auto stem = read_subtree_stem(a)) {
        bool by_stem = in_subtree(*stem, t), by_rules = account_allows(a, cid_text.c_str(), user_text.c_str(), Access::read, t);
        bool same = by_stem == in_subtree(*stem, t.c_str()) && (by_stem ? by_rules : a.superuser || !by_rules);
        FUZZ_CHECK("read-stem-differs", same,
                   "stem '" + fuzz::printable(*stem) + "' of rule '" + fuzz::printable(rule_text) + "' and the rules differ on '" +
                       fuzz::printable(t) + "'");
      }
    }
    for (const std::string* f : {&P, &F}) {
      if (!is_valid_filter(*f) || !account_allows(a, cid_text.c_str(), user_text.c_str(), Access::subscribe, *f)) continue;
      for (int hl = 0; hl < 3; ++hl)
        for (size_t shift = 0; shift < 2; ++shift) {
          std::string t = derive(*f, material, hl, shift);
          if (!is_valid_topic(t) || !topic_matches(*f, t)) continue;
          FUZZ_CHECK("account-subscribe-unsound", account_allows(a, cid_text.c_str(), user_text.c_str(), Access::read, t),
                     "rule '" + fuzz::printable(rule_text) + "' allows subscribing to '" + fuzz::printable(*f) +
                         "' but not reading '" + fuzz::printable(t) + "'");
        }
    }
  }
  return 0;
}
