#include "iotgate/model.h"

#include <algorithm>
#include <charconv>

#include <rapidjson/document.h>

#include "iotgate/accounts/accounts.h"
#include "iotgate/ids.h"
#include "iotgate/topic.h"

namespace iotgate {
namespace {
const std::string* field(const Fields& f, const char* name) {
  auto it = f.find(name);
  return it == f.end() ? nullptr : &it->second;
}
std::string value_or(const Fields& f, const char* name, const char* fallback) {
  const std::string* v = field(f, name);
  return v ? *v : fallback;
}
bool flag(const Fields& f, const char* name, bool fallback = false) {
  const std::string* v = field(f, name);
  return v ? *v == "1" : fallback;
}
int64_t int_or(const Fields& f, const char* name, int64_t fallback) {
  const std::string* v = field(f, name);
  int64_t out = 0;
  return v && parse_decimal(*v, out) ? out : fallback;
}
bool fail(std::string* error, std::string message) {
  if (error) *error = std::move(message);
  return false;
}
}  // namespace

const char* to_string(Protocol p) {
  switch (p) {
    case Protocol::lierda: return "lierda";
    case Protocol::krt: return "krt";
    case Protocol::emu: return "emu";
  }
  return "?";
}

std::optional<Protocol> parse_protocol(std::string_view s) {
  if (s == "lierda") return Protocol::lierda;
  if (s == "krt") return Protocol::krt;
  if (s == "emu") return Protocol::emu;
  return std::nullopt;
}

std::string device_key(std::string_view product, std::string_view device) {
  std::string k;
  k.reserve(product.size() + device.size() + 1);
  k.append(product).append(":").append(device);
  return k;
}

std::optional<Product> product_from_fields(const std::string& id, const Fields& f, std::string* error) {
  Product p;
  p.id = id;
  auto protocol = parse_protocol(value_or(f, "protocol", ""));
  if (!protocol) return fail(error, "product " + id + ": unknown protocol"), std::nullopt;
  p.protocol = *protocol;
  p.enabled = flag(f, "enabled", true);
  switch (p.protocol) {
    case Protocol::lierda:
      p.openid = value_or(f, "openid", "");
      p.product_key = value_or(f, "product_key", "");
      p.auth_type = static_cast<int>(std::clamp<int64_t>(int_or(f, "auth_type", -1), -1, 3));  // range-checked below
      p.encrypted = flag(f, "encrypted");
      p.limit = int_or(f, "limit", 1000);
      if (!is_lierda_id(id) || !is_lierda_id(p.openid) || !is_hex_key(p.product_key) || p.auth_type < 0 ||
          p.auth_type > 2)
        return fail(error, "product " + id + ": malformed lierda fields"), std::nullopt;
      break;
    case Protocol::krt:
      p.product_secret = value_or(f, "product_secret", "");
      p.dynamic_register = flag(f, "dynamic_register");
      p.auto_create = flag(f, "auto_create");
      p.limit = int_or(f, "limit", 1000);
      if (!is_plain_id(id) || p.product_secret.empty())
        return fail(error, "product " + id + ": malformed krt fields"), std::nullopt;
      break;
    case Protocol::emu:
      p.emu_namespace = value_or(f, "namespace", "");
      if (!is_plain_id(id) || (p.emu_namespace != "wudun" && p.emu_namespace != "user"))
        return fail(error, "product " + id + ": malformed emu fields"), std::nullopt;
      break;
  }
  return p;
}

std::optional<Device> device_from_fields(const std::string& product, const std::string& id, const Fields& f,
                                         std::string* error) {
  Device d;
  d.product = product;
  d.id = id;
  d.enabled = flag(f, "enabled", true);
  const std::string origin = value_or(f, "origin", "cli");
  d.created_by_device = origin == "auto" || origin == "auth";
  d.secret = value_or(f, "secret", "");
  if (const std::string* h = field(f, "secret_hash"); h && !h->empty()) {
    auto hash = parse_pbkdf2_hash(*h);
    if (!hash) return fail(error, "device " + product + ":" + id + ": malformed secret_hash"), std::nullopt;
    d.secret_hash = std::make_shared<const Pbkdf2Hash>(std::move(*hash));
  }
  d.activated = flag(f, "activated");
  d.last_online = int_or(f, "last_online", 0);
  d.last_offline = int_or(f, "last_offline", 0);
  SessionKey key;
  key.id = value_or(f, "session_id", "");
  key.nonce = static_cast<uint32_t>(int_or(f, "nonce", 0));
  key.key = value_or(f, "session_key", "");
  key.expires = int_or(f, "session_key_expires", 0);
  if (!key.id.empty() || !key.key.empty()) d.session = std::make_shared<const SessionKey>(std::move(key));
  return d;
}

std::optional<Account> account_from_fields(const std::string& name, const Fields& f, std::string* error) {
  Account a;
  a.name = name;
  a.superuser = flag(f, "superuser");
  if (const std::string* h = field(f, "password_hash"); h && !h->empty()) {
    a.password_hash = parse_pbkdf2_hash(*h);
    if (!a.password_hash) return fail(error, "account " + name + ": malformed password_hash"), std::nullopt;
  }
  std::string rules = value_or(f, "rules", "[]");
  rapidjson::Document doc;
  doc.Parse(rules.c_str(), rules.size());
  if (doc.HasParseError() || !doc.IsArray()) return fail(error, "account " + name + ": rules is not a JSON array"), std::nullopt;
  for (const auto& r : doc.GetArray()) {
    if (!r.IsString()) return fail(error, "account " + name + ": a rule is not a string"), std::nullopt;
    auto rule = parse_account_rule(std::string_view(r.GetString(), r.GetStringLength()));
    if (!rule) return fail(error, "account " + name + ": malformed rule"), std::nullopt;
    a.rules.push_back(std::move(*rule));
  }
  return a;
}

const Product* Registry::product(std::string_view id) const {
  auto it = products_.find(id);
  return it == products_.end() ? nullptr : &it->second;
}
// ---- DeviceTable

size_t DeviceTable::hash(std::string_view product, std::string_view id) {
  const size_t h = std::hash<std::string_view>{}(product);
  return h ^ (std::hash<std::string_view>{}(id) + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2));
}

size_t DeviceTable::position(std::string_view product, std::string_view id, size_t h) const {
  const size_t mask = index_size_ - 1;
  const uint32_t tag = tag_of(h);
  for (size_t i = h & mask;; i = (i + 1) & mask) {
    const uint64_t entry = index_[i];
    if (entry == kNone) return i;
    if ((entry >> 32) != tag) continue;
    const Device& d = at(slot_of(entry));
    if (d.id == id && d.product == product) return i;
  }
}

DeviceTable::DeviceTable(const DeviceTable& other)
    : live_(other.live_), free_(other.free_), slots_(other.slots_), size_(other.size_) {
  if (other.index_size_) {
    index_.reset(static_cast<uint64_t*>(std::malloc(other.index_size_ * sizeof(uint64_t))));
    if (!index_) throw std::bad_alloc();
    std::copy(other.index_.get(), other.index_.get() + other.index_size_, index_.get());
    index_size_ = other.index_size_;
  }
  for (const auto& chunk : other.chunks_) {
    chunks_.push_back(std::make_unique<Device[]>(size_t{1} << kChunkBits));
    std::copy(chunk.get(), chunk.get() + (size_t{1} << kChunkBits), chunks_.back().get());
  }
}

Device* DeviceTable::find(std::string_view product, std::string_view id) {
  if (size_ == 0) return nullptr;
  const uint64_t entry = index_[position(product, id, hash(product, id))];
  return entry == kNone ? nullptr : &at(slot_of(entry));
}

void DeviceTable::reserve(size_t devices) {
  const size_t want = devices + devices / 4;
  size_t entries = 1024;
  while (want * 4 > entries * 3) entries *= 2;
  if (entries > index_size_) resize_index(entries);
}

void DeviceTable::resize_index(size_t entries) {
  auto old = std::move(index_);
  const size_t old_size = index_size_;
  index_.reset(static_cast<uint64_t*>(std::calloc(entries, sizeof(uint64_t))));  // kNone is 0
  if (!index_) throw std::bad_alloc();
  index_size_ = entries;
  const size_t mask = index_size_ - 1;
  for (size_t k = 0; k < old_size; ++k) {
    const uint64_t entry = old[k];
    if (entry == kNone) continue;
    const Device& d = at(slot_of(entry));
    size_t i = hash(d.product, d.id) & mask;
    while (index_[i] != kNone) i = (i + 1) & mask;
    index_[i] = entry;
  }
}

Device& DeviceTable::put(Device d) {
  if ((size_ + 1) * 4 > index_size_ * 3) resize_index(index_size_ == 0 ? 1024 : index_size_ * 2);
  const size_t h = hash(d.product, d.id);
  const size_t i = position(d.product, d.id, h);
  if (index_[i] != kNone) {
    Device& existing = at(slot_of(index_[i]));
    existing = std::move(d);
    return existing;
  }
  uint32_t slot;
  if (!free_.empty()) {
    slot = free_.back();
    free_.pop_back();
  } else {
    slot = slots_++;
    if ((slot >> kChunkBits) == chunks_.size()) chunks_.push_back(std::make_unique<Device[]>(size_t{1} << kChunkBits));
    live_.push_back(false);
  }
  Device& stored = at(slot);
  stored = std::move(d);
  live_[slot] = true;
  index_[i] = (static_cast<uint64_t>(tag_of(h)) << 32) | (static_cast<uint64_t>(slot) + 1);
  ++size_;
  return stored;
}

bool DeviceTable::erase(std::string_view product, std::string_view id) {
  if (size_ == 0) return false;
  size_t i = position(product, id, hash(product, id));
  if (index_[i] == kNone) return false;
  const uint32_t slot = slot_of(index_[i]);
  at(slot) = Device{};  // frees what it held on the heap
  live_[slot] = false;
  free_.push_back(slot);
  --size_;
  // Linear probing without tombstones: move back every later entry of the run that may sit at i.
  const size_t mask = index_size_ - 1;
  index_[i] = kNone;
  for (size_t j = (i + 1) & mask; index_[j] != kNone; j = (j + 1) & mask) {
    const Device& d = at(slot_of(index_[j]));
    const size_t home = hash(d.product, d.id) & mask;
    // The entry at j may move to i when its home is not in the cyclic range (i, j].
    if (((j - home) & mask) >= ((j - i) & mask)) {
      index_[i] = index_[j];
      index_[j] = kNone;
      i = j;
    }
  }
  return true;
}

bool DeviceTable::dispose_some() {
  if (!chunks_.empty()) chunks_.pop_back();
  if (!chunks_.empty()) return true;
  *this = DeviceTable();
  return false;
}

// ---- Registry

const Account* Registry::account(const std::string& name) const {
  auto it = accounts_.find(name);
  return it == accounts_.end() ? nullptr : &it->second;
}
const Device* Registry::emu_device_by_uid(const std::string& uid) const {
  auto it = emu_uids_.find(uid);
  return it == emu_uids_.end() ? nullptr : devices_.find(it->second, uid);
}
size_t Registry::auto_created(const std::string& product) const {
  auto it = auto_created_.find(product);
  return it == auto_created_.end() ? 0 : it->second;
}
void Registry::count_origin(const Device& d, int delta) {
  if (!d.created_by_device) return;
  size_t& n = auto_created_[d.product.str()];
  n = delta > 0 ? n + 1 : (n > 0 ? n - 1 : 0);
}

void Registry::put_product(Product p) {
  std::string id = p.id;
  products_[id] = std::move(p);
}
void Registry::remove_product(const std::string& id) {
  products_.erase(id);
  auto_created_.erase(id);
  std::vector<std::string> ids;
  devices_.for_each([&](const Device& d) {
    if (d.product == id) ids.push_back(d.id.str());
  });
  for (const auto& device : ids) {
    // Only the uid entry that points at this very device: another product's gateway may share the id.
    auto uid = emu_uids_.find(device);
    if (uid != emu_uids_.end() && uid->second == id) emu_uids_.erase(uid);
    devices_.erase(id, device);
  }
}
Device& Registry::put_device(Device d) {
  if (const Product* p = product(d.product); p && p->protocol == Protocol::emu) emu_uids_[d.id.str()] = d.product.str();
  Device* existing = devices_.find(d.product, d.id);
  if (existing) count_origin(*existing, -1);
  count_origin(d, +1);
  if (!existing) return devices_.put(std::move(d));
  *existing = std::move(d);
  return *existing;
}
void Registry::remove_device(std::string_view product, std::string_view id) {
  const Device* d = devices_.find(product, id);
  if (!d) return;
  auto uid = emu_uids_.find(std::string(id));
  if (uid != emu_uids_.end() && uid->second == product) emu_uids_.erase(uid);
  count_origin(*d, -1);
  devices_.erase(product, id);
}
void Registry::put_account(Account a) {
  std::string name = a.name;
  accounts_[name] = std::move(a);
}
void Registry::remove_account(const std::string& name) { accounts_.erase(name); }

}  // namespace iotgate
