#include <gtest/gtest.h>

#include <rapidjson/document.h>

#include "iotgate/lierda/lierda.h"

using namespace iotgate;

namespace {
std::function<int64_t()> at(int64_t value) {
  return [value] { return value; };
}
}  // namespace

TEST(LierdaAck, TimeSyncCarriesMillisecondsAndZone) {
  auto a = lierda_ack_for("update_time", R"({"MessageId":1231,"HeaderCtrl":29,"Payload":"","Version":"2.0"})",
                          at(1700000000123), "Asia/Shanghai", at(9));
  ASSERT_TRUE(a);
  EXPECT_EQ(a->topic_suffix, "update_time_ack");
  EXPECT_EQ(a->message_id, "1231");
  EXPECT_EQ(a->header, 29);
  EXPECT_FALSE(a->encryptable);
  rapidjson::Document d;
  d.Parse(a->payload.c_str());
  EXPECT_STREQ(d["Code"].GetString(), "200");
  EXPECT_EQ(d["Data"]["timestamp"].GetInt64(), 1700000000123);
  EXPECT_STREQ(d["Data"]["timezone"].GetString(), "Asia/Shanghai");
}

TEST(LierdaAck, ReportsAreAckedOnTheirAckTopics) {
  struct Case {
    const char* suffix;
    int header;
    const char* ack;
  } cases[] = {{"uplink", 4, "uplink_ack"},
               {"model/property/report", 16, "model/property/report_ack"},
               {"model/event/alarm/report", 17, "model/event/alarm/report_ack"},
               {"model/history/data/report", 27, "model/history/data/report_ack"},
               {"model/hex/report", 18, "model/hex/report_ack"},
               {"model/hex/report", 19, "model/hex/report_ack"}};
  for (const auto& c : cases) {
    std::string frame = R"({"MessageId":"m7","HeaderCtrl":)" + std::to_string(c.header) + R"(,"Payload":{},"Version":"2.0"})";
    auto a = lierda_ack_for(c.suffix, frame, at(0), "UTC", at(1));
    ASSERT_TRUE(a) << c.suffix;
    EXPECT_EQ(a->topic_suffix, c.ack);
    EXPECT_EQ(a->header, c.header);
    EXPECT_EQ(a->message_id, "\"m7\"");
    EXPECT_EQ(a->payload, R"({"Code":"200","Msg":"SUCCESS"})");
    EXPECT_TRUE(a->problem.empty());
  }
}

TEST(LierdaAck, FullHexReportIsABareHexString) {
  auto a = lierda_ack_for("model/hex", "00f0ff013FA00000", at(0), "UTC", at(42));
  ASSERT_TRUE(a);
  EXPECT_EQ(a->topic_suffix, "model/hex_ack");
  EXPECT_EQ(a->header, 28);
  EXPECT_EQ(a->message_id, "42");
  EXPECT_FALSE(a->encryptable);
  EXPECT_TRUE(a->problem.empty());
  EXPECT_TRUE(lierda_ack_for("model/hex", "\"00f0ff01\"", at(0), "UTC", at(1))->problem.empty());
  EXPECT_FALSE(lierda_ack_for("model/hex", "00f0ff0", at(0), "UTC", at(1))->problem.empty());
  EXPECT_FALSE(lierda_ack_for("model/hex", "xyz!", at(0), "UTC", at(1))->problem.empty());
}

TEST(LierdaAck, MalformedFramesGet4001OrNothing) {
  auto wrong_header = lierda_ack_for("uplink", R"({"MessageId":1,"HeaderCtrl":16,"Payload":{},"Version":"2.0"})", at(0), "UTC", at(1));
  ASSERT_TRUE(wrong_header);
  EXPECT_NE(wrong_header->payload.find("4001"), std::string::npos);
  auto wrong_version = lierda_ack_for("uplink", R"({"MessageId":1,"HeaderCtrl":4,"Payload":{},"Version":"1.0"})", at(0), "UTC", at(1));
  EXPECT_NE(wrong_version->payload.find("4001"), std::string::npos);
  EXPECT_FALSE(lierda_ack_for("uplink", "not json", at(0), "UTC", at(1)));
  EXPECT_FALSE(lierda_ack_for("uplink", "[1]", at(0), "UTC", at(1)));
  EXPECT_FALSE(lierda_ack_for("firmware_report", "{}", at(0), "UTC", at(1)));  // OTA has its own handler
  EXPECT_FALSE(lierda_ack_for("config_report", "{}", at(0), "UTC", at(1)));
  EXPECT_FALSE(lierda_ack_for("model/event//report", R"({"HeaderCtrl":17})", at(0), "UTC", at(1)));  // no event id
}

TEST(LierdaAck, ClocksAreReadOnlyWhenTheAckNeedsThem) {
  int reads = 0;
  std::function<int64_t()> counted = [&] { return ++reads; };
  EXPECT_FALSE(lierda_ack_for("uplink", std::string(64, 'x'), counted, "UTC", counted));  // opaque data: no ack
  EXPECT_TRUE(lierda_ack_for("uplink", R"({"MessageId":5,"HeaderCtrl":4,"Payload":{},"Version":"2.0"})", counted,
                             "UTC", counted));
  EXPECT_EQ(reads, 0);
  auto no_id = lierda_ack_for("uplink", R"( {"HeaderCtrl":4,"Payload":{},"Version":"2.0"})", counted, "UTC", counted);
  ASSERT_TRUE(no_id);
  EXPECT_EQ(no_id->message_id, "1");
  EXPECT_EQ(reads, 1);
}
