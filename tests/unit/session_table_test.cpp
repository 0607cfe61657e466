#include <gtest/gtest.h>

#include <string>

#include "iotgate/session_table.h"

using iotgate::SessionTable;

TEST(SessionTable, FindsWhatWasPutAndForgetsWhatWasErased) {
  SessionTable<int> t;
  EXPECT_EQ(t.find("a"), nullptr);
  t.put("a", 1);
  t.put("b", 2);
  ASSERT_NE(t.find("a"), nullptr);
  EXPECT_EQ(*t.find("a"), 1);
  EXPECT_EQ(*t.find("b"), 2);
  t.put("a", 3);  // replaces
  EXPECT_EQ(*t.find("a"), 3);
  EXPECT_EQ(t.size(), 2u);
  EXPECT_TRUE(t.erase("a"));
  EXPECT_FALSE(t.erase("a"));
  EXPECT_EQ(t.find("a"), nullptr);
  EXPECT_EQ(*t.find("b"), 2);
  t.clear();
  EXPECT_EQ(t.find("b"), nullptr);
  EXPECT_EQ(t.size(), 0u);
}

// The recent-lookup entries must never answer for an erased or replaced session, even when the same id comes
// back, the caller's id lives at another address, or the map rehashes underneath them.
TEST(SessionTable, RecentLookupsStayCorrectThroughChurn) {
  SessionTable<std::string> t;
  std::unordered_map<std::string, std::string> model;
  for (int round = 0; round < 200; ++round) {
    std::string id = "V2_BE5C0D01.BENCH" + std::to_string(round % 37) + "_1_1700000000";
    std::string other = "sub-" + std::to_string(round % 3);
    switch (round % 5) {
      case 0:
      case 3: t.put(id, "v" + std::to_string(round)); model[id] = "v" + std::to_string(round); break;
      case 1: t.erase(id); model.erase(id); break;
      default: break;
    }
    if (round % 7 == 0) {
      t.put(other, other);
      model[other] = other;
    }
    for (const std::string& key : {id, other, std::string(id)}) {  // same content, different address
      const std::string* found = t.find(key);
      auto expected = model.find(key);
      ASSERT_EQ(found != nullptr, expected != model.end()) << key << " round " << round;
      if (found) {
        EXPECT_EQ(*found, expected->second) << key << " round " << round;
      }
    }
  }
  EXPECT_EQ(t.size(), model.size());
}

TEST(SessionTable, IteratesEverySession) {
  SessionTable<int> t;
  for (int i = 0; i < 100; ++i) t.put("c" + std::to_string(i), i);
  int sum = 0;
  for (const auto& [id, v] : t) sum += v;
  EXPECT_EQ(sum, 4950);
}
