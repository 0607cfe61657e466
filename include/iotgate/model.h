// The entities iotgate keeps in Redis (docs/redis-schema.md) and mirrors in memory.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

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

struct Device {
  std::string product;
  std::string id;
  bool enabled = true;
  std::string origin;  // cli | auth | auto
  std::string secret;  // lierda, krt
  std::optional<Pbkdf2Hash> secret_hash;  // emu
  bool activated = false;                 // krt
  int64_t last_online = 0;
  int64_t last_offline = 0;
  // lierda encrypted products
  std::string session_id;
  uint32_t nonce = 0;
  std::string session_key;
  int64_t session_key_expires = 0;
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

// Everything the broker thread needs to authenticate and authorize, in memory.
class Registry {
 public:
  const Product* product(const std::string& id) const;
  const Device* device(const std::string& product, const std::string& id) const;
  Device* device_mut(const std::string& product, const std::string& id);
  const Account* account(const std::string& name) const;
  // EMU gateways log in with their device uid as username.
  const Device* emu_device_by_uid(const std::string& uid) const;
  // Devices of `product` that a device's own request created (KRT auto-creation "auto", a Lierda type 0 AUTH
  // request "auth"); kept as a count, not scanned.
  size_t auto_created(const std::string& product) const;

  void put_product(Product p);
  void remove_product(const std::string& id);  // and its devices
  void put_device(Device d);
  void remove_device(const std::string& product, const std::string& id);
  void put_account(Account a);
  void remove_account(const std::string& name);

  size_t product_count() const { return products_.size(); }
  size_t device_count() const { return devices_.size(); }
  size_t account_count() const { return accounts_.size(); }
  const std::unordered_map<std::string, Device>& devices() const { return devices_; }

 private:
  std::unordered_map<std::string, Product> products_;
  std::unordered_map<std::string, Device> devices_;  // key: device_key(product, id)
  std::unordered_map<std::string, Account> accounts_;
  std::unordered_map<std::string, std::string> emu_uids_;  // uid -> device_key
  std::unordered_map<std::string, size_t> auto_created_;    // product -> devices with origin "auto"
  void count_origin(const Device& d, int delta);
};

}  // namespace iotgate
