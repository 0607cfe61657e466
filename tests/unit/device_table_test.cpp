// CompactString and DeviceTable: the registry's compact device storage (model.h).
#include <gtest/gtest.h>

#include <map>
#include <random>
#include <string>

#include "iotgate/compact_string.h"
#include "iotgate/model.h"

using namespace iotgate;

TEST(CompactStringTest, HoldsShortStringsInsideAndLongOnesOnTheHeap) {
  for (size_t size : {0, 1, 15, 16, 17, 23, 24, 100}) {
    const std::string text(size, 'x');
    CompactString<24> s(text);
    EXPECT_EQ(s.view(), text) << size;
    EXPECT_EQ(s.size(), size);
    EXPECT_EQ(s.empty(), size == 0);
    CompactString<24> copy = s;  // deep: both live on
    CompactString<24> moved = std::move(s);
    EXPECT_EQ(copy, text);
    EXPECT_EQ(moved, text);
    EXPECT_TRUE(s.empty());  // NOLINT(bugprone-use-after-move): a moved-from string is empty
    copy = moved;
    copy = copy;  // self-assignment keeps the text
    EXPECT_EQ(copy, text);
    moved = "short";
    EXPECT_EQ(moved, "short");
  }
  static_assert(sizeof(CompactString<16>) == 16 && sizeof(CompactString<40>) == 40);
}

TEST(CompactStringTest, AssigningAPartOfItselfKeepsTheText) {
  CompactString<16> s(std::string(40, 'a') + "tail");
  s = s.view().substr(40);
  EXPECT_EQ(s, "tail");
  CompactString<16> t("0123456789");
  t = t.view().substr(2, 3);
  EXPECT_EQ(t, "234");
}

namespace {
Device make(const std::string& product, const std::string& id, const std::string& secret) {
  Device d;
  d.product = product;
  d.id = id;
  d.secret = secret;
  return d;
}
}  // namespace

// Random puts and erases against a std::map: the index's backward-shift deletion and its growth must keep every
// device findable, and only those.
TEST(DeviceTableTest, AgreesWithAMapThroughRandomPutsAndErases) {
  DeviceTable table;
  std::map<std::pair<std::string, std::string>, std::string> expected;
  std::mt19937 rng(7);
  for (int step = 0; step < 60000; ++step) {
    if (step == 30000) table.reserve(40000);  // resizes the index with devices in it
    const std::string product = "P" + std::to_string(rng() % 3);
    const std::string id = "device-" + std::to_string(rng() % 5000);
    if (rng() % 3 == 0) {
      EXPECT_EQ(table.erase(product, id), expected.erase({product, id}) == 1);
    } else {
      const std::string secret = "secret-" + std::to_string(step) + (step % 2 ? std::string(40, 's') : "");
      table.put(make(product, id, secret));
      expected[{product, id}] = secret;
    }
  }
  ASSERT_EQ(table.size(), expected.size());
  for (const auto& [key, secret] : expected) {
    const Device* d = table.find(key.first, key.second);
    ASSERT_NE(d, nullptr);
    EXPECT_EQ(d->secret, secret);
  }
  size_t seen = 0;
  table.for_each([&](const Device& d) {
    ++seen;
    EXPECT_TRUE(expected.count({d.product.str(), d.id.str()}));
  });
  EXPECT_EQ(seen, expected.size());
  for (int i = 0; i < 5000; ++i) {  // ids never put, and erased ones
    const std::string id = "device-" + std::to_string(i);
    if (!expected.count({"P0", id})) {
      EXPECT_EQ(table.find("P0", id), nullptr);
    }
  }
}

// Sessions keep a pointer to their device: other devices coming and going, and the index growing, must not move it.
TEST(DeviceTableTest, ADeviceStaysWhereItIsWhileOthersComeAndGo) {
  DeviceTable table;
  Device* kept = &table.put(make("P", "kept", "k"));
  for (int i = 0; i < 20000; ++i) table.put(make("P", "d" + std::to_string(i), "s"));
  for (int i = 0; i < 20000; i += 2) table.erase("P", "d" + std::to_string(i));
  EXPECT_EQ(table.find("P", "kept"), kept);
  EXPECT_EQ(kept->secret, "k");
  kept->last_offline = 42;
  table.put(make("P", "kept", "k2"));  // replaced in place
  EXPECT_EQ(table.find("P", "kept"), kept);
  EXPECT_EQ(kept->last_offline, 0);
}

TEST(DeviceTableTest, ACopyIsIndependentOfTheOriginal) {
  DeviceTable table;
  for (int i = 0; i < 5000; ++i) table.put(make("P", "d" + std::to_string(i), std::string(50, 'x')));
  DeviceTable copy = table;
  table.erase("P", "d1");
  table.find("P", "d2")->secret = "changed";
  ASSERT_NE(copy.find("P", "d1"), nullptr);
  EXPECT_EQ(copy.find("P", "d2")->secret, std::string(50, 'x'));
  EXPECT_EQ(copy.size(), 5000u);
  EXPECT_EQ(table.size(), 4999u);
}

// The same device id under two products is two devices.
TEST(DeviceTableTest, TheProductIsPartOfTheKey) {
  DeviceTable table;
  table.put(make("A", "same", "a"));
  table.put(make("B", "same", "b"));
  EXPECT_EQ(table.find("A", "same")->secret, "a");
  EXPECT_EQ(table.find("B", "same")->secret, "b");
  EXPECT_EQ(table.find("AB", "same"), nullptr);
  table.erase("A", "same");
  EXPECT_EQ(table.find("A", "same"), nullptr);
  EXPECT_EQ(table.find("B", "same")->secret, "b");
}

// A registry a load replaced is freed a chunk of 4096 devices per TICK (Gate::tick).
TEST(DeviceTableTest, ATableBeingThrownAwayIsFreedAChunkAtATime) {
  DeviceTable table;
  for (int i = 0; i < 10000; ++i) table.put(make("P", "d" + std::to_string(i), std::string(50, 'x')));
  int calls = 1;
  while (table.dispose_some()) ++calls;
  EXPECT_EQ(calls, 3);  // 10,000 devices: three chunks
  EXPECT_EQ(table.size(), 0u);
  EXPECT_EQ(table.find("P", "d1"), nullptr);
  table.put(make("P", "again", "s"));  // and it is an empty table again
  EXPECT_EQ(table.find("P", "again")->secret, "s");
}

TEST(DeviceTableTest, AMovedFromTableIsEmpty) {
  DeviceTable table;
  table.put(make("P", "d", "s"));
  DeviceTable moved = std::move(table);
  EXPECT_EQ(moved.find("P", "d")->secret, "s");
  EXPECT_EQ(table.size(), 0u);  // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(table.find("P", "d"), nullptr);
}
