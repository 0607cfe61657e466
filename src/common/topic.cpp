#include "iotgate/topic.h"

namespace iotgate {
namespace {
// Splits off the next level; returns false when there are no more levels.
struct Levels {
  std::string_view rest;
  bool done = false;
  bool next(std::string_view& level) {
    if (done) return false;
    size_t slash = rest.find('/');
    if (slash == std::string_view::npos) {
      level = rest;
      done = true;
    } else {
      level = rest.substr(0, slash);
      rest.remove_prefix(slash + 1);
    }
    return true;
  }
};
}  // namespace

bool is_valid_topic(std::string_view topic) {
  if (topic.empty() || topic.size() > 65535) return false;
  for (char c : topic)
    if (c == '+' || c == '#' || c == '\0') return false;
  return true;
}

bool is_valid_filter(std::string_view filter) {
  if (filter.empty() || filter.size() > 65535) return false;
  Levels levels{filter};
  std::string_view level;
  while (levels.next(level)) {
    for (char c : level)
      if (c == '\0') return false;
    if (level.find_first_of("+#") != std::string_view::npos && level.size() != 1) return false;
    if (level == "#" && !levels.done) return false;
  }
  return true;
}

bool topic_matches(std::string_view filter, std::string_view topic) {
  // A leading '$' topic is never matched by a filter starting with a wildcard (MQTT 4.7.2).
  if (!topic.empty() && topic[0] == '$' && !filter.empty() && (filter[0] == '+' || filter[0] == '#')) return false;
  Levels f{filter}, t{topic};
  std::string_view fl, tl;
  while (f.next(fl)) {
    if (fl == "#") return true;  // also matches the parent level ("a/#" matches "a")
    if (!t.next(tl)) return false;
    if (fl != "+" && fl != tl) return false;
  }
  return !t.next(tl);
}

bool filter_within(std::string_view pattern, std::string_view filter) {
  if (!filter.empty() && filter[0] == '$' && !pattern.empty() && (pattern[0] == '+' || pattern[0] == '#'))
    return false;
  Levels p{pattern}, f{filter};
  std::string_view pl, fl;
  while (p.next(pl)) {
    if (pl == "#") return true;
    if (!f.next(fl)) return false;
    if (fl == "#") return false;  // the filter reaches deeper than the pattern allows
    if (pl == "+") continue;      // covers any single level, including a '+' in the filter
    if (fl == "+" || fl != pl) return false;
  }
  return !f.next(fl);
}

bool is_topic_level(std::string_view s) {
  return !s.empty() && s.find_first_of("/+#") == std::string_view::npos && s.find('\0') == std::string_view::npos;
}

bool all_topic_levels(std::string_view s) {
  while (true) {
    size_t slash = s.find('/');
    if (!is_topic_level(s.substr(0, slash))) return false;
    if (slash == std::string_view::npos) return true;
    s.remove_prefix(slash + 1);
  }
}

bool one_level_between(std::string_view s, std::string_view head, std::string_view tail) {
  if (s.substr(0, head.size()) != head || !ends_with(s, tail) || s.size() < head.size() + tail.size()) return false;
  return is_topic_level(s.substr(head.size(), s.size() - head.size() - tail.size()));
}

}  // namespace iotgate
