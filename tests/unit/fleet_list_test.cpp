// The lists of a fleet announcement (fleet.h): what one broker writes, every other reads back exactly; what does not
// parse ends the list there.
#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "iotgate/fleet.h"

using namespace iotgate;

namespace {
std::vector<std::pair<int64_t, std::string>> read_all(std::string_view list) {
  std::vector<std::pair<int64_t, std::string>> out;
  int64_t number = 0;
  std::string_view text;
  while (fleet::next(list, number, text)) out.emplace_back(number, text);
  return out;
}
}  // namespace

TEST(FleetList, EntriesComeBackAsWritten) {
  const std::vector<std::pair<int64_t, std::string>> entries = {
      {1800000000123, "V2_AA30C505.20MQTTJ000121_1_1800000000"},
      {0, ""},
      {-5, "12 34 "},                       // digits and spaces inside the text
      {9223372036854775807, std::string("a\0b\n\r:c", 8)},  // any byte
      {42, "AA30C505:20MQTTJ000121"},
  };
  std::string list;
  for (const auto& [n, t] : entries) fleet::append(list, n, t);
  EXPECT_EQ(read_all(list), entries);
  EXPECT_TRUE(read_all("").empty());
}

TEST(FleetList, AMalformedEntryEndsTheList) {
  std::string good;
  fleet::append(good, 7, "dev");
  EXPECT_EQ(read_all(good + "8 99 short"), (std::vector<std::pair<int64_t, std::string>>{{7, "dev"}}));  // too long
  EXPECT_EQ(read_all(good + "8 -1 x").size(), 1u);   // negative length
  EXPECT_EQ(read_all(good + "08 1 x").size(), 1u);   // not canonical
  EXPECT_EQ(read_all(good + "8 1").size(), 1u);      // no space after the length
  EXPECT_EQ(read_all(good + "x 1 y").size(), 1u);    // not a number
  EXPECT_EQ(read_all(good + "99999999999999999999 1 y").size(), 1u);  // out of range
  std::string_view rest = "8 1 xtail";
  int64_t n = 0;
  std::string_view text;
  ASSERT_TRUE(fleet::next(rest, n, text));
  EXPECT_EQ(text, "x");
  EXPECT_EQ(rest, "tail");
  EXPECT_FALSE(fleet::next(rest, n, text));
  EXPECT_EQ(rest, "tail");  // left as it was
}
