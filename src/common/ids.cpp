#include "iotgate/ids.h"

#include <cctype>
#include <charconv>

namespace iotgate {
namespace {
bool all_of(std::string_view s, bool (*pred)(char)) {
  for (char c : s)
    if (!pred(c)) return false;
  return true;
}
bool is_alnum(char c) { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); }
bool is_plain(char c) { return is_alnum(c) || c == '_' || c == '-'; }
bool is_account_char(char c) { return is_plain(c) || c == '.' || c == '@'; }
bool is_hex_char(char c) { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F') || (c >= 'a' && c <= 'f'); }
}  // namespace

bool is_hex(std::string_view s, size_t length) { return s.size() == length && all_of(s, is_hex_char); }
bool is_node_eui(std::string_view s) { return s.size() >= 4 && s.size() <= 32 && all_of(s, is_alnum); }
bool is_plain_id(std::string_view s) { return !s.empty() && s.size() <= 64 && all_of(s, is_plain); }
bool is_account_name(std::string_view s) { return !s.empty() && s.size() <= 64 && all_of(s, is_account_char); }
bool is_topic_level_safe(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s)
    if (c == '+' || c == '#' || c == '/' || c == '\0') return false;
  return true;
}

bool parse_decimal(std::string_view s, int64_t& out) {
  std::string_view digits = s.substr(!s.empty() && s[0] == '-' ? 1 : 0);
  if (digits.empty() || digits[0] < '0' || digits[0] > '9') return false;
  if (digits[0] == '0' && s.size() > 1) return false;  // "0" only: no "00", "01", "-0"
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && ptr == s.data() + s.size();
}

}  // namespace iotgate
