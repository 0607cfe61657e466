#include "iotgate/fleet.h"

#include <charconv>

#include "iotgate/ids.h"

namespace iotgate::fleet {

void append(std::string& list, int64_t number, std::string_view text) {
  char digits[48];
  auto end = std::to_chars(digits, digits + 20, number).ptr;
  *end++ = ' ';
  end = std::to_chars(end, digits + sizeof digits - 1, text.size()).ptr;
  *end++ = ' ';
  list.append(digits, static_cast<size_t>(end - digits));
  list.append(text);
}

namespace {
// A decimal (parse_decimal's canonical form) up to the next space, which it consumes.
bool take_number(std::string_view& in, int64_t& out) {
  const size_t space = in.find(' ');
  if (space == std::string_view::npos || !parse_decimal(in.substr(0, space), out)) return false;
  in.remove_prefix(space + 1);
  return true;
}
}  // namespace

bool next(std::string_view& list, int64_t& number, std::string_view& text) {
  std::string_view in = list;
  int64_t length = 0;
  if (!take_number(in, number) || !take_number(in, length) || length < 0 || static_cast<uint64_t>(length) > in.size())
    return false;
  text = in.substr(0, static_cast<size_t>(length));
  list = in.substr(static_cast<size_t>(length));
  return true;
}

}  // namespace iotgate::fleet
