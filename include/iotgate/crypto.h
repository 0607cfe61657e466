// Cryptographic primitives the protocols need, over OpenSSL 3 (each protocol's own constructions are in its module).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace iotgate {

using Bytes = std::vector<uint8_t>;

std::string to_hex_upper(const uint8_t* data, size_t size);
inline std::string to_hex_upper(const Bytes& b) { return to_hex_upper(b.data(), b.size()); }
std::optional<Bytes> from_hex(std::string_view hex);

// AES-128-ECB with PKCS#7 padding; key is exactly 16 bytes.
Bytes aes128_ecb_encrypt(const Bytes& key, std::string_view plaintext);
std::optional<std::string> aes128_ecb_decrypt(const Bytes& key, const Bytes& ciphertext);

// Bytes from the OpenSSL CSPRNG; throws std::runtime_error if it fails.
Bytes random_bytes(size_t n);
std::string random_hex(size_t n_bytes);  // upper-case

bool constant_time_equal(std::string_view a, std::string_view b);

// mosquitto_passwd's "$7$" format: $7$ITERATIONS$SALT_BASE64$HASH_BASE64 (PBKDF2-HMAC-SHA512, 64-byte hash).
struct Pbkdf2Hash {
  int iterations = 0;
  Bytes salt;
  Bytes hash;
};
std::optional<Pbkdf2Hash> parse_pbkdf2_hash(std::string_view encoded);
std::string make_pbkdf2_hash(std::string_view password, int iterations = 101);
bool verify_pbkdf2(const Pbkdf2Hash& hash, std::string_view password);

}  // namespace iotgate
