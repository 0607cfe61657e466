// Client id -> session of the connected clients, with the last few lookups answered without hashing.
// Each publish asks for its sender twice (write ACL, message callback) and for every subscriber once (read ACL);
// perf on the broker thread showed the hash lookups (bucket, node and key each a likely cache miss next to the
// kernel's networking) as the plugin's largest cost per message. A handful of recent entries, compared by
// content, answers two of those three lookups. Entries point into the map's nodes, which stay put on insert and
// rehash; any erase forgets them all.
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

namespace iotgate {

template <typename Session>
class SessionTable {
  struct ViewHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  using Map = std::unordered_map<std::string, Session, ViewHash, std::equal_to<>>;

 public:
  using const_iterator = typename Map::const_iterator;

  Session* find(std::string_view client_id) { return const_cast<Session*>(std::as_const(*this).find(client_id)); }
  const Session* find(std::string_view client_id) const {
    Recent* oldest = &recent_[0];
    for (Recent& r : recent_) {
      if (r.entry && r.entry->first == client_id) {
        r.used = ++clock_;
        return &r.entry->second;
      }
      if (r.used < oldest->used) oldest = &r;
    }
    auto it = map_.find(client_id);
    if (it == map_.end()) return nullptr;
    *oldest = Recent{&*it, ++clock_};
    return &it->second;
  }
  // Inserts or replaces the session of `client_id`.
  Session& put(std::string_view client_id, Session session) {
    auto it = map_.find(client_id);
    if (it != map_.end()) return it->second = std::move(session);
    return map_.emplace(std::string(client_id), std::move(session)).first->second;
  }
  bool erase(std::string_view client_id) {
    auto it = map_.find(client_id);
    if (it == map_.end()) return false;
    forget_recent();
    map_.erase(it);
    return true;
  }
  void clear() {
    forget_recent();
    map_.clear();
  }
  size_t size() const { return map_.size(); }
  const_iterator begin() const { return map_.begin(); }
  const_iterator end() const { return map_.end(); }

 private:
  struct Recent {
    const typename Map::value_type* entry = nullptr;
    uint64_t used = 0;
  };
  void forget_recent() { recent_.fill(Recent{}); }

  Map map_;
  mutable std::array<Recent, 4> recent_{};
  mutable uint64_t clock_ = 0;
};

}  // namespace iotgate
