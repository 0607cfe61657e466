#include <gtest/gtest.h>

#include <deque>
#include <map>
#include <random>
#include <string>

#include "iotgate/session_table.h"

using iotgate::SessionTable;

namespace {
struct TestSession {
  const void* handle = nullptr;
  int value = 0;
};
struct TestSummary {
  int value = -1;
  TestSummary() = default;
  explicit TestSummary(const TestSession& s) : value(s.value) {}
};
using Table = SessionTable<TestSession, TestSummary>;
}  // namespace

TEST(SessionTable, FindsWhatWasPutAndForgetsWhatWasErased) {
  Table t;
  int conn_a = 0, conn_b = 0;
  EXPECT_EQ(t.find("a"), nullptr);
  EXPECT_EQ(t.find(&conn_a, "a").session, nullptr);
  t.put("a", {&conn_a, 1});
  t.put("b", {&conn_b, 2});
  ASSERT_NE(t.find("a"), nullptr);
  EXPECT_EQ(t.find("a")->value, 1);
  EXPECT_EQ(t.find(&conn_a, "a").session->value, 1);
  EXPECT_EQ(t.find(&conn_b, "b").session->value, 2);
  // The broker's stand-in clients (another handle, or none): no session of theirs, whatever id they carry.
  EXPECT_EQ(t.find(nullptr, "b").session, nullptr);
  EXPECT_EQ(t.find(&conn_a, "b").session, nullptr);
  t.put("a", {&conn_a, 3});                   // replaces
  EXPECT_EQ(t.find(&conn_a, "a").session->value, 3);
  EXPECT_EQ(t.size(), 2u);
  EXPECT_TRUE(t.erase("a"));
  EXPECT_FALSE(t.erase("a"));
  EXPECT_EQ(t.find("a"), nullptr);
  EXPECT_EQ(t.find(&conn_a, "a").session, nullptr);  // a will after the disconnect: no session any more
  EXPECT_EQ(t.find(&conn_b, "b").session->value, 2);
  t.clear();
  EXPECT_EQ(t.find("b"), nullptr);
  EXPECT_EQ(t.find(&conn_b, "b").session, nullptr);
  EXPECT_EQ(t.size(), 0u);
}

// A connection's lookups must never reach another client's session: not after a takeover of its id by another
// connection, not when its handle is reused by a new connection with another id.
TEST(SessionTable, HandleLookupsFollowTakeoverAndReuse) {
  Table t;
  int old_conn = 0, new_conn = 0;
  const std::string id = "V2_BE5C0D01.BENCH1_1_1700000000";
  t.put(id, {&old_conn, 1});
  t.put(id, {&new_conn, 2});  // takeover: the new connection logged in with the same id
  EXPECT_EQ(t.find(&new_conn, id.c_str()).session->value, 2);
  // The old connection has no session any more: its will must not be judged with the new connection's rights.
  EXPECT_EQ(t.find(&old_conn, id.c_str()).session, nullptr);
  EXPECT_TRUE(t.erase(id));
  const std::string other = "V2_BE5C0D01.BENCH2_1_1700000000";
  t.put(other, {&new_conn, 3});  // the freed client object is reused by another client
  EXPECT_EQ(t.find(&new_conn, id.c_str()).session, nullptr);
  EXPECT_EQ(t.find(&new_conn, other.c_str()).session->value, 3);
}

// Against a plain map, through growth, probe-run deletions, shared and null handles, ids passed from the buffer
// they were put with and from copies at other addresses. The index is checked on its own too: a lookup that
// falls back to the id would hide a lost or wrong index entry.
TEST(SessionTable, AgreesWithAPlainMapThroughChurn) {
  Table t;
  std::map<std::string, TestSession> model;
  std::map<const void*, std::string> indexed;  // handle -> id of the last put with that handle, while it lasts
  std::deque<std::string> ids;                 // stable buffers, like the broker's own id strings
  for (int i = 0; i < 3000; ++i) ids.push_back("V2_BE5C0D01.BENCH" + std::to_string(i) + "_1_1700000000");
  std::vector<int> conns(800);
  std::mt19937 rng(7);
  auto unindex = [&](const std::string& id) {
    auto m = model.find(id);
    if (m == model.end()) return;
    auto i = indexed.find(m->second.handle);
    if (i != indexed.end() && i->second == id) indexed.erase(i);
  };
  for (int round = 0; round < 60000; ++round) {
    const std::string& id = ids[rng() % (round < 20000 ? 3000 : 300)];  // grow big, then churn a small set
    const void* handle = rng() % 20 == 0 ? nullptr : &conns[rng() % conns.size()];
    switch (rng() % 4) {
      case 0:
      case 1:
        t.put(id, {handle, round});
        unindex(id);
        model[id] = {handle, round};
        if (handle) indexed[handle] = id;
        break;
      case 2:
        unindex(id);
        EXPECT_EQ(t.erase(id), model.erase(id) == 1);
        break;
      default:
        break;
    }
    const std::string copy = id;  // same content, another address
    for (const void* h : {handle, static_cast<const void*>(&conns[rng() % conns.size()])}) {
      auto expected = model.find(id);
      auto i = indexed.find(h);
      bool expect_indexed = h && i != indexed.end() && i->second == id;
      for (const char* key : {id.c_str(), copy.c_str()}) {
        const TestSession* found = t.find(h, key).session;
        // A connection finds only a session it holds itself.
        ASSERT_EQ(found != nullptr, expected != model.end() && expected->second.handle == h) << id << " round " << round;
        if (found) {
          ASSERT_EQ(found->value, expected->second.value) << id << " round " << round;
        }
        Table::Found indexed_found = t.find_indexed(h, key);
        ASSERT_EQ(indexed_found.session, expect_indexed ? found : nullptr) << id << " round " << round;
        if (indexed_found.session) {  // the summary is that of the session as it was put
          ASSERT_EQ(indexed_found.summary->value, indexed_found.session->value) << id << " round " << round;
        }
      }
    }
  }
  EXPECT_EQ(t.size(), model.size());
  for (const auto& [h, id] : indexed) ASSERT_EQ(t.find_indexed(h, id.c_str()).summary->value, model[id].value) << id;
}

TEST(SessionTable, IteratesEverySession) {
  Table t;
  for (int i = 0; i < 100; ++i) t.put("c" + std::to_string(i), {nullptr, i});
  int sum = 0;
  for (const auto& [id, s] : t) sum += s.value;
  EXPECT_EQ(sum, 4950);
}

// Summaries are copies made at put(): update_indexed changes sessions and remakes the summaries it is told to.
TEST(SessionTable, UpdateIndexedRemakesTheSummariesItIsToldTo) {
  Table t;
  int conn_a = 0, conn_b = 0;
  t.put("a", {&conn_a, 1});
  t.put("b", {&conn_b, 2});
  t.put("c", {nullptr, 3});  // not indexed: no summary to remake
  int visited = 0;
  t.update_indexed([&](TestSession& s) {
    ++visited;
    s.value += 10;
    return s.value == 11;  // only a's
  });
  EXPECT_EQ(visited, 2);
  EXPECT_EQ(t.find(&conn_a, "a").summary->value, 11);
  EXPECT_EQ(t.find(&conn_a, "a").session->value, 11);
  EXPECT_EQ(t.find(&conn_b, "b").summary->value, 2);  // b's summary was not remade
  EXPECT_EQ(t.find(&conn_b, "b").session->value, 12);
  EXPECT_EQ(t.find("c")->value, 3);
}
