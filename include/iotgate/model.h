// The entities iotgate keeps in Redis (docs/redis-schema.md) and mirrors in memory.
#pragma once
#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "iotgate/compact_string.h"
#include "iotgate/crypto.h"

namespace iotgate {

enum class Protocol { lierda, krt, emu };
const char* to_string(Protocol p);
std::optional<Protocol> parse_protocol(std::string_view s);

struct Product {
  std::string id;
  Protocol protocol = Protocol::lierda;
  bool enabled = true;
  // lierda
  std::string openid;
  std::string product_key;
  int auth_type = 0;
  bool encrypted = false;
  // krt
  std::string product_secret;
  bool dynamic_register = false;
  bool auto_create = false;
  // krt auto-creation and lierda type 0 AUTH requests: most devices that devices may create
  int64_t limit = 1000;
  // emu: "wudun" (id is a PRODUCT_KEY) or "user" (id is a TENANT)
  std::string emu_namespace;
};

// Lierda encrypted products: the session key a device was last issued (HeaderCtrl 3).
struct SessionKey {
  std::string id;
  uint32_t nonce = 0;
  std::string key;
  int64_t expires = 0;
};

// One of up to millions in a broker's memory: the strings are held inline (CompactString) and what only some
// protocols have is shared behind a pointer, about 136 bytes a device.
struct Device {
  CompactString<16> product;
  CompactString<24> id;
  CompactString<40> secret;                        // lierda, krt
  std::shared_ptr<const Pbkdf2Hash> secret_hash;   // emu
  std::shared_ptr<const SessionKey> session;       // lierda encrypted products; null until one is issued
  int64_t last_online = 0;
  int64_t last_offline = 0;
  bool enabled = true;
  bool activated = false;  // krt
  // Created by a device's own request (origin "auto": KRT auto-creation; "auth": a Lierda type 0 AUTH request), not
  // by the CLI: counted against the product's limit.
  bool created_by_device = false;

  // The session key's hex, "" when none was issued.
  std::string_view session_key() const { return session ? std::string_view(session->key) : std::string_view(); }
};

struct AccountRule {
  bool read = false;
  bool write = false;
  std::string filter;  // may contain %u and %c
  bool substitutes = false;  // the filter has a '%': the ACL check then needs the client's names
  // How a topic is matched against the filter (set by parse_account_rule, accounts/accounts.h): the common shapes by comparing a
  // prefix, the others level by level (topic_matches).
  enum class Shape : uint8_t {
    levels,    // '+' in it, or substitutes
    exact,     // no wildcard: the topic equals the filter
    subtree,   // "X/#", X without wildcards: the topic is X or starts with "X/"
    all,       // "#": every topic but those starting with '$'
  } shape = Shape::levels;
};

struct Account {
  std::string name;
  std::optional<Pbkdf2Hash> password_hash;
  bool superuser = false;
  std::vector<AccountRule> rules;
};

using Fields = std::map<std::string, std::string>;
// Build entities from a Redis hash; nullopt (with *error set) when a field is missing or malformed.
std::optional<Product> product_from_fields(const std::string& id, const Fields& f, std::string* error);
std::optional<Device> device_from_fields(const std::string& product, const std::string& id, const Fields& f,
                                         std::string* error);
std::optional<Account> account_from_fields(const std::string& name, const Fields& f, std::string* error);

std::string device_key(std::string_view product, std::string_view device);

// The devices of a registry. They sit in chunks, so their addresses stay put while others come and go, and are found
// by an open-addressing index hashed from (product, id) whose entries hold the slot and 32 bits of the hash, so a
// probe reads a device only when those match: a device costs its record and about 16 bytes of index, and a table of
// a million is a few hundred allocations, freed as quickly.
class DeviceTable {
 public:
  DeviceTable() = default;
  DeviceTable(const DeviceTable& other);
  DeviceTable& operator=(const DeviceTable& other) { return *this = DeviceTable(other); }
  // The table moved from is left empty.
  DeviceTable(DeviceTable&& other) noexcept { *this = std::move(other); }
  DeviceTable& operator=(DeviceTable&& other) noexcept {
    chunks_ = std::move(other.chunks_);
    live_ = std::move(other.live_);
    free_ = std::move(other.free_);
    index_ = std::move(other.index_);
    slots_ = std::exchange(other.slots_, 0);
    index_size_ = std::exchange(other.index_size_, 0);
    size_ = std::exchange(other.size_, 0);
    other.chunks_.clear();
    other.live_.clear();
    other.free_.clear();
    return *this;
  }

  Device* find(std::string_view product, std::string_view id);
  const Device* find(std::string_view product, std::string_view id) const {
    return const_cast<DeviceTable*>(this)->find(product, id);
  }
  // Stores `d`, replacing the device of the same product and id; returns where it now is.
  Device& put(Device d);
  bool erase(std::string_view product, std::string_view id);
  // Sizes the index for `devices` and a quarter more, so that many puts do not rehash on the way.
  void reserve(size_t devices);
  size_t size() const { return size_; }
  template <typename F>  // f(const Device&)
  void for_each(F&& f) const {
    for (uint32_t slot = 0; slot < slots_; ++slot)
      if (live_[slot]) f(at(slot));
  }
  // For a table being thrown away, which is unusable after the first call: frees one chunk of devices; false once
  // everything is freed. Freeing a million devices at once stopped the broker thread for ~50 ms.
  bool dispose_some();

 private:
  static constexpr uint32_t kChunkBits = 12;  // 4096 devices a chunk
  // An index entry: the slot + 1 in the low 32 bits (0: empty), the hash's high 32 bits above.
  static constexpr uint64_t kNone = 0;
  static uint32_t slot_of(uint64_t entry) { return static_cast<uint32_t>(entry) - 1; }
  static uint32_t tag_of(size_t hash) { return static_cast<uint32_t>(static_cast<uint64_t>(hash) >> 32); }
  Device& at(uint32_t slot) const { return chunks_[slot >> kChunkBits][slot & ((1u << kChunkBits) - 1)]; }
  static size_t hash(std::string_view product, std::string_view id);
  // The index entry holding (product, id), or the empty one where it would go.
  size_t position(std::string_view product, std::string_view id, size_t hash) const;
  void resize_index(size_t entries);

  std::vector<std::unique_ptr<Device[]>> chunks_;
  std::vector<bool> live_;      // per slot
  std::vector<uint32_t> free_;  // slots below slots_ not live
  uint32_t slots_ = 0;          // slots handed out so far
  // A power of two long, at most 3/4 full. calloc'ed: fresh pages come zeroed and are touched as entries are
  // written, not all at once (a vector's fill faulted 16 MB in at the start of a load of a million).
  struct FreeIndex {
    void operator()(uint64_t* p) const { std::free(p); }
  };
  std::unique_ptr<uint64_t[], FreeIndex> index_;
  size_t index_size_ = 0;
  size_t size_ = 0;
};

// Everything the broker thread needs to authenticate and authorize, in memory.
class Registry {
 public:
  const Product* product(std::string_view id) const;
  const Device* device(std::string_view product, std::string_view id) const { return devices_.find(product, id); }
  Device* device_mut(std::string_view product, std::string_view id) { return devices_.find(product, id); }
  const Account* account(const std::string& name) const;
  // EMU gateways log in with their device uid as username.
  const Device* emu_device_by_uid(const std::string& uid) const;
  // Devices of `product` that a device's own request created (Device::created_by_device); kept as a count, not
  // scanned.
  size_t auto_created(const std::string& product) const;

  void put_product(Product p);
  void remove_product(const std::string& id);  // and its devices
  Device& put_device(Device d);
  void reserve_devices(size_t devices) { devices_.reserve(devices); }
  // For a registry being thrown away (unusable after the first call): frees part of it; false once all is freed.
  bool dispose_some() { return devices_.dispose_some(); }
  void remove_device(std::string_view product, std::string_view id);
  void put_account(Account a);
  void remove_account(const std::string& name);

  size_t product_count() const { return products_.size(); }
  size_t device_count() const { return devices_.size(); }
  size_t account_count() const { return accounts_.size(); }
  template <typename F>  // f(const Device&)
  void for_each_device(F&& f) const {
    devices_.for_each(std::forward<F>(f));
  }

 private:
  // Looked up by std::string_view (a device's CompactString product) without making a std::string.
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, Product, StringHash, std::equal_to<>> products_;
  DeviceTable devices_;
  std::unordered_map<std::string, Account> accounts_;
  std::unordered_map<std::string, std::string> emu_uids_;  // uid -> its product
  std::unordered_map<std::string, size_t> auto_created_;    // product -> devices created_by_device
  void count_origin(const Device& d, int delta);
};

}  // namespace iotgate
