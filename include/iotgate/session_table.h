// Client id -> session of the connected clients, also found by the connection (the broker's client object).
// Every publish asks for its sender once (its write check) and for every subscriber once (the read check).
// A lookup by id hashes the id and compares it with the key: bucket, node, key and then the session's topic prefix
// are each a likely cache miss next to the kernel's networking, and perf on the broker thread showed them as the
// plugin's largest cost per message. The callbacks also carry the connection and the broker's own id buffer, so a
// flat table keyed by the connection answers with one probe and two pointer comparisons, without reading the id;
// each of its slots is one cache line that also holds a `Summary` of the session (what a message needs of it).
// A lookup whose connection is not indexed (the broker's stand-in client of a retained message's publisher, a will
// after its sender's disconnect) goes by id.
//
// `Session` has a `const void* handle` member: the connection it belongs to (null: found by id only).
// `Summary` is trivially copyable, at most 40 bytes, constructible from a `const Session&`.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

namespace iotgate {

template <typename Session, typename Summary>
class SessionTable {
  struct ViewHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  using Map = std::unordered_map<std::string, Session, ViewHash, std::equal_to<>>;
  using Entry = typename Map::value_type;

 public:
  using const_iterator = typename Map::const_iterator;
  // A session found through the index comes with its summary; one found by id has none.
  struct Found {
    Session* session = nullptr;
    const Summary* summary = nullptr;
  };

  Session* find(std::string_view client_id) {
    auto it = map_.find(client_id);
    return it == map_.end() ? nullptr : &it->second;
  }
  const Session* find(std::string_view client_id) const { return const_cast<SessionTable*>(this)->find(client_id); }

  // The session that connection `handle` holds as `client_id` (NUL-terminated): by the index, else by id. A
  // session of the same id found by id belongs to this connection only when its handle is `handle`: after a
  // takeover the id names the new connection, whose rights must never judge the old one (its will).
  Found find(const void* handle, const char* client_id) {
    Found f = find_indexed(handle, client_id);
    if (!f.session) {
      Session* s = find(std::string_view(client_id));
      if (s && s->handle == handle) f.session = s;
    }
    return f;
  }
  // The index alone: the session that connection `handle` logged in with, if its id is `client_id`. The broker
  // passes the same id buffer as at the login, and that pointer confirms it without reading the id (whose bytes
  // are rarely in the cache); another buffer is compared by content.
  Found find_indexed(const void* handle, const char* client_id) {
    if (!handle || slots_.empty()) return {};
    const size_t mask = slots_.size() - 1;
    for (size_t i = slot_of(handle); slots_[i].handle; i = (i + 1) & mask) {
      const Slot& s = slots_[i];
      if (s.handle != handle) continue;
      if (s.id_buffer == client_id || s.entry->first == client_id) return {&s.entry->second, &s.summary};
      return {};
    }
    return {};
  }

  // Inserts or replaces the session of `client_id`, indexed by its handle. `client_id.data()` should be the
  // NUL-terminated buffer later lookups of this connection pass (the broker's own), unchanged while it lives.
  Session& put(std::string_view client_id, Session session) {
    auto it = map_.find(client_id);
    if (it != map_.end()) {
      unindex(*it);
      it->second = std::move(session);
    } else {
      it = map_.emplace(std::string(client_id), std::move(session)).first;
    }
    index(*it, client_id.data());
    return it->second;
  }
  bool erase(std::string_view client_id) {
    auto it = map_.find(client_id);
    if (it == map_.end()) return false;
    unindex(*it);
    map_.erase(it);
    return true;
  }
  void clear() {
    map_.clear();
    slots_.clear();
    indexed_ = 0;
  }
  // Calls `update` on the session of every indexed connection, and rebuilds the summary of each for which it
  // returns true (a summary is a copy: it must follow what it was made from).
  template <typename F>
  void update_indexed(F&& update) {
    for (Slot& s : slots_)
      if (s.handle && update(s.entry->second)) s.summary = Summary(s.entry->second);
  }
  size_t size() const { return map_.size(); }
  const_iterator begin() const { return map_.begin(); }
  const_iterator end() const { return map_.end(); }

 private:
  // Open addressing with linear probing; map nodes stay put on insert and rehash, so entries may point into them.
  struct alignas(64) Slot {
    const void* handle = nullptr;
    const char* id_buffer = nullptr;
    Entry* entry = nullptr;
    Summary summary;
  };
  static_assert(std::is_trivially_copyable_v<Summary> && sizeof(Slot) == 64, "a slot is one cache line");

  // MurmurHash3's 64-bit finalizer: the low bits of a handle carry its alignment and the high bits barely vary, and
  // with half of it (one multiply) handles spaced evenly apart crowded into fewer home slots (longer probes).
  size_t slot_of(const void* handle) const {
    uint64_t x = reinterpret_cast<uintptr_t>(handle);
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return static_cast<size_t>(x) & (slots_.size() - 1);
  }
  // A handle holds one session: a later put with the same handle takes the slot over.
  void index(Entry& entry, const char* id_buffer) {  // id_buffer: the caller's copy of entry.first
    const void* handle = entry.second.handle;
    if (!handle) return;
    if ((indexed_ + 1) * 4 > slots_.size() * 3) grow();  // at most three quarters full
    const size_t mask = slots_.size() - 1;
    size_t i = slot_of(handle);
    while (slots_[i].handle && slots_[i].handle != handle) i = (i + 1) & mask;
    if (!slots_[i].handle) ++indexed_;
    slots_[i] = Slot{handle, id_buffer, &entry, Summary(entry.second)};
  }
  void unindex(const Entry& entry) {
    const void* handle = entry.second.handle;
    if (!handle || slots_.empty()) return;
    const size_t mask = slots_.size() - 1;
    for (size_t i = slot_of(handle); slots_[i].handle; i = (i + 1) & mask) {
      if (slots_[i].handle != handle) continue;
      if (slots_[i].entry == &entry) remove_slot(i);
      return;
    }
  }
  // Backward-shift deletion: later slots of the same probe run move up, so a probe never stops at a hole.
  void remove_slot(size_t hole) {
    const size_t mask = slots_.size() - 1;
    for (size_t j = (hole + 1) & mask; slots_[j].handle; j = (j + 1) & mask) {
      size_t home = slot_of(slots_[j].handle);
      // Slot j may fill the hole unless its home lies cyclically in (hole, j].
      bool home_after_hole = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
      if (!home_after_hole) {
        slots_[hole] = slots_[j];
        hole = j;
      }
    }
    slots_[hole] = Slot{};
    --indexed_;
  }
  void grow() {
    std::vector<Slot> old = std::move(slots_);
    slots_.assign(old.empty() ? 64 : old.size() * 2, Slot{});
    const size_t mask = slots_.size() - 1;
    for (const Slot& s : old) {
      if (!s.handle) continue;
      size_t i = slot_of(s.handle);
      while (slots_[i].handle) i = (i + 1) & mask;
      slots_[i] = s;
    }
  }

  Map map_;
  std::vector<Slot> slots_;  // size 0 or a power of two, at most three quarters full
  size_t indexed_ = 0;
};

}  // namespace iotgate
