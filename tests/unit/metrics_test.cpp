#include <gtest/gtest.h>

#include "iotgate/config.h"
#include "iotgate/metrics.h"
#include "iotgate/wire.h"

using namespace iotgate;

TEST(Metrics, LabelValuesAreEscapedAsTheTextFormatRequires) {
  EXPECT_EQ(metric_key("iotgate_loaded", {}), "iotgate_loaded");
  EXPECT_EQ(metric_key("m", {{"task", "a\"b\\c\nd"}, {"event", "acked"}}), R"(m{task="a\"b\\c\nd",event="acked"})");
}

TEST(Metrics, ThePageDescribesEveryFamilyAndGroupsItsSamples) {
  MetricSamples broker = {
      {R"(iotgate_sessions{kind="krt-device"})", "3"},
      {R"(iotgate_sessions_bogus{x="1"})", "9"},  // no such family: not on the page
      {"iotgate_loaded", "1"},
      {R"(iotgate_sessions{kind="account"})", "1"},
  };
  StoreStats store;
  store.redis_up = true;
  store.queued_jobs = 7;
  std::string page = render_metrics(broker, store);
  EXPECT_NE(page.find("# HELP iotgate_sessions Sessions"), std::string::npos);
  const std::string family = "# TYPE iotgate_sessions gauge\n"
                             "iotgate_sessions{kind=\"account\"} 1\n"
                             "iotgate_sessions{kind=\"krt-device\"} 3\n"
                             "# HELP iotgate_acl_denials_total";
  EXPECT_NE(page.find(family), std::string::npos) << page;
  EXPECT_EQ(page.find("bogus"), std::string::npos);
  EXPECT_NE(page.find("\niotgate_redis_up 1\n"), std::string::npos);
  EXPECT_NE(page.find("\niotgate_store_queue_depth 7\n"), std::string::npos);
  EXPECT_NE(page.find("\niotgate_loads_total 0\n"), std::string::npos);
  EXPECT_EQ(page.find("\niotgate_last_load_records "), std::string::npos);  // no load yet
  store.loads = 1;
  store.last_load_records = 12;
  store.last_load_seconds = 0.25;
  EXPECT_NE(render_metrics(broker, store).find("\niotgate_last_load_duration_seconds 0.25\n"), std::string::npos);
}

TEST(Metrics, SamplesCrossTheStoreSocketWhole) {
  MetricSamples samples = {{R"(iotgate_sessions{kind="account"})", "1"}, {"iotgate_loaded", "1"}};
  std::string out;
  wire::put_metrics(out, samples);
  size_t used = 0;
  auto frame = wire::next_frame(out, &used);
  ASSERT_TRUE(frame);
  EXPECT_EQ(used, out.size());
  EXPECT_EQ(frame->tag, wire::Tag::metrics);
  EXPECT_EQ(wire::get_metrics(frame->body), samples);
  EXPECT_FALSE(wire::get_metrics(frame->body.substr(0, frame->body.size() - 1)));
}

TEST(Metrics, TheListenOptionTakesOneHostAndPort) {
  auto parsed = parse_config({{"metrics_listen", "127.0.0.1:9883"}});
  ASSERT_TRUE(std::holds_alternative<Config>(parsed));
  ASSERT_TRUE(std::get<Config>(parsed).metrics_listen);
  EXPECT_EQ(std::get<Config>(parsed).metrics_listen->port, 9883);
  EXPECT_FALSE(std::get<Config>(parse_config({})).metrics_listen);
  for (const char* bad : {"127.0.0.1", "a:1,b:2", "", "host:0", "host:99999"})
    EXPECT_TRUE(std::holds_alternative<std::string>(parse_config({{"metrics_listen", bad}}))) << bad;
}
