// MQTT topic and filter helpers, without mosquitto.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>  // memcmp; strnlen (POSIX) from <string.h>
#include <string.h>
#include <optional>
#include <string>
#include <string_view>

namespace iotgate {

bool is_valid_topic(std::string_view topic);    // non-empty, no + # or NUL
bool is_valid_filter(std::string_view filter);  // non-empty, + and # only as whole levels, # last, no NUL
// True when topic (no wildcards) matches filter.
bool topic_matches(std::string_view filter, std::string_view topic);
// True when every topic matched by `filter` is also matched by `pattern` (both valid filters).
bool filter_within(std::string_view pattern, std::string_view filter);

// Helpers of the protocols' topic rules (their suffixes after a session's prefix).
// One topic level: non-empty, no wildcard, no separator, no NUL.
bool is_topic_level(std::string_view s);
// Every level of `s` is one (non-empty and free of wildcards).
bool all_topic_levels(std::string_view s);
// `s` is head + one level + tail ("model/event/{id}/report"; tail may be empty).
bool one_level_between(std::string_view s, std::string_view head, std::string_view tail);
inline bool ends_with(std::string_view s, std::string_view tail) {
  return s.size() >= tail.size() && s.substr(s.size() - tail.size()) == tail;
}

// A topic as the ACL reads it: either a string_view, or the broker's NUL-terminated topic whose length is not
// measured until something needs it. Most checks decide on a prefix, so a message's topic is compared only as far
// as that prefix reaches (the broker passes C strings; measuring each one cost a libc call per check).
class TopicText {
 public:
  TopicText(const char* nul_terminated) : data_(nul_terminated ? nul_terminated : ""), size_(kUnmeasured) {}
  TopicText(std::string_view s) : data_(s.data()), size_(s.size()) {}
  TopicText(const std::string& s) : data_(s.data()), size_(s.size()) {}

  std::string_view view() const {
    if (size_ == kUnmeasured) {
      // What is left to measure after a prefix is short: a loop, not a call to strlen.
      size_t n = 0;
      while (data_[n] != '\0') ++n;
      size_ = n;
    }
    return {data_, size_};
  }
  char front_or_nul() const { return size_ == 0 ? '\0' : data_[0]; }
  // The rest of the topic after `prefix`, or nullopt when the topic does not start with it.
  std::optional<TopicText> after(std::string_view prefix) const {
    if (size_ != kUnmeasured) {
      if (size_ < prefix.size() || std::string_view(data_, prefix.size()) != prefix) return std::nullopt;
      return TopicText(std::string_view(data_ + prefix.size(), size_ - prefix.size()));
    }
    // A C string ends at its NUL: compare only what it holds (strnlen first), whatever `prefix` holds. Two calls
    // cost a tenth of the instructions of a loop over the bytes of a 37-byte device prefix.
    if (::strnlen(data_, prefix.size()) != prefix.size() || std::memcmp(data_, prefix.data(), prefix.size()) != 0)
      return std::nullopt;
    return TopicText(data_ + prefix.size());
  }
  bool operator==(std::string_view s) const {
    auto rest = after(s);
    return rest && rest->empty();
  }
  bool empty() const { return size_ == 0 || (size_ == kUnmeasured && data_[0] == '\0'); }

 private:
  static constexpr size_t kUnmeasured = SIZE_MAX;
  const char* data_;
  mutable size_t size_;
};

}  // namespace iotgate
