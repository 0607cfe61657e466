#include <gtest/gtest.h>

#include "iotgate/ids.h"
#include "iotgate/topic.h"

using namespace iotgate;

TEST(Ids, Rules) {
  EXPECT_TRUE(is_lierda_id("AA30C505"));
  EXPECT_TRUE(is_lierda_id("aa30c505"));
  EXPECT_FALSE(is_lierda_id("AA30C50"));
  EXPECT_FALSE(is_lierda_id("AA30C50G"));
  EXPECT_TRUE(is_hex_key("DB6FACEF35BEBA0517712F0E4BE32936"));
  EXPECT_FALSE(is_hex_key("DB6FACEF35BEBA0517712F0E4BE3293"));
  EXPECT_TRUE(is_node_eui("20MQTTJ000121"));
  EXPECT_TRUE(is_node_eui("abcd"));
  EXPECT_FALSE(is_node_eui("abc"));
  EXPECT_FALSE(is_node_eui(std::string(33, 'a')));
  EXPECT_TRUE(is_node_eui(std::string(32, 'a')));
  for (const char* bad : {"ab+cd", "ab#cd", "ab/cd", "ab_cd", "ab-cd", "ab cd"}) EXPECT_FALSE(is_node_eui(bad)) << bad;
  EXPECT_FALSE(is_node_eui(std::string("abc\0d", 5)));
  EXPECT_TRUE(is_plain_id("dev_01-x"));
  EXPECT_FALSE(is_plain_id(""));
  EXPECT_FALSE(is_plain_id("a.b"));
  EXPECT_FALSE(is_plain_id("a/b"));
  EXPECT_FALSE(is_plain_id(std::string(65, 'a')));
  EXPECT_TRUE(is_account_name("ops.team@site-1"));
  EXPECT_FALSE(is_account_name("ops:team"));
  EXPECT_TRUE(is_topic_level_safe("abc"));
  for (const char* bad : {"", "a+", "#", "a/b"}) EXPECT_FALSE(is_topic_level_safe(bad)) << bad;
}

TEST(Topic, Validity) {
  EXPECT_TRUE(is_valid_topic("a/b/c"));
  EXPECT_TRUE(is_valid_topic("/a//"));
  EXPECT_FALSE(is_valid_topic(""));
  EXPECT_FALSE(is_valid_topic("a/+/c"));
  EXPECT_FALSE(is_valid_topic("a/#"));
  EXPECT_TRUE(is_valid_filter("a/+/c"));
  EXPECT_TRUE(is_valid_filter("#"));
  EXPECT_TRUE(is_valid_filter("a/#"));
  EXPECT_TRUE(is_valid_filter("+"));
  EXPECT_FALSE(is_valid_filter("a/#/c"));
  EXPECT_FALSE(is_valid_filter("a/b+/c"));
  EXPECT_FALSE(is_valid_filter("a/b#"));
  EXPECT_FALSE(is_valid_filter(""));
}

TEST(Topic, Matches) {
  EXPECT_TRUE(topic_matches("a/b", "a/b"));
  EXPECT_FALSE(topic_matches("a/b", "a/c"));
  EXPECT_TRUE(topic_matches("a/+", "a/b"));
  EXPECT_TRUE(topic_matches("a/+", "a/"));
  EXPECT_FALSE(topic_matches("a/+", "a/b/c"));
  EXPECT_TRUE(topic_matches("a/#", "a/b/c"));
  EXPECT_TRUE(topic_matches("a/#", "a"));
  EXPECT_TRUE(topic_matches("#", "x/y"));
  EXPECT_FALSE(topic_matches("#", "$SYS/x"));
  EXPECT_FALSE(topic_matches("+/x", "$SYS/x"));
  EXPECT_TRUE(topic_matches("$SYS/#", "$SYS/x"));
  EXPECT_TRUE(topic_matches("/sys/+/+/+/uplink", "/sys/A/B/C/uplink"));
  EXPECT_FALSE(topic_matches("/sys/+/+/+/uplink", "/sys/A/B/uplink"));
}

TEST(Topic, FilterWithin) {
  EXPECT_TRUE(filter_within("a/#", "a/b/+"));
  EXPECT_TRUE(filter_within("a/#", "a/#"));
  EXPECT_TRUE(filter_within("a/+", "a/+"));
  EXPECT_TRUE(filter_within("a/+", "a/b"));
  EXPECT_FALSE(filter_within("a/+", "a/#"));
  EXPECT_FALSE(filter_within("a/b", "a/+"));
  EXPECT_FALSE(filter_within("a/+/c", "a/+/#"));
  EXPECT_TRUE(filter_within("#", "+/+"));
  EXPECT_FALSE(filter_within("a/b", "a/b/c"));
  EXPECT_FALSE(filter_within("a/b/c", "a/b"));
  EXPECT_FALSE(filter_within("#", "$SYS/#"));
  EXPECT_FALSE(filter_within("x/ota/+/command", "x/ota/#"));
  EXPECT_TRUE(filter_within("x/ota/+/command", "x/ota/emu_version/command"));
}

TEST(Topic, TextComparesOnlyWhatItNeeds) {
  // A C string is compared up to its NUL, never past it, and measured only when asked.
  const char text[] = "a/b/c";
  TopicText t(text);
  auto rest = t.after("a/");
  ASSERT_TRUE(rest);
  EXPECT_EQ(rest->view(), "b/c");
  EXPECT_FALSE(t.after("a/b/c/"));
  EXPECT_FALSE(t.after("a/x"));
  EXPECT_TRUE(t.after("a/b/c")->empty());
  EXPECT_TRUE(t == "a/b/c");
  EXPECT_FALSE(t == "a/b");
  EXPECT_EQ(t.front_or_nul(), 'a');
  EXPECT_EQ(TopicText("").front_or_nul(), '\0');
  EXPECT_TRUE(TopicText(static_cast<const char*>(nullptr)).empty());
  // A prefix holding a NUL never runs a C string past its end.
  EXPECT_FALSE(TopicText("ab").after(std::string_view("ab\0cd", 5)));
  // A string_view may hold a NUL: it is compared as it is.
  const std::string with_nul("a\0b", 3);
  EXPECT_EQ(TopicText(with_nul).after(std::string_view("a\0", 2))->view(), "b");
}
