#include "iotgate/crypto.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <charconv>
#include <memory>
#include <stdexcept>

namespace iotgate {
namespace {
using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)>;

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// Fetched once: with OpenSSL 3 a legacy EVP_aes_128_ecb() makes every EncryptInit fetch the implementation again
// (under a lock), which shows on the login path. Kept for the life of the process.
const EVP_CIPHER* aes128_ecb() {
  static EVP_CIPHER* cipher = EVP_CIPHER_fetch(nullptr, "AES-128-ECB", nullptr);
  return cipher ? cipher : EVP_aes_128_ecb();
}

std::optional<Bytes> base64_decode(std::string_view in) {
  if (in.empty() || in.size() % 4 != 0) return std::nullopt;
  Bytes out(in.size() / 4 * 3);
  int n = EVP_DecodeBlock(out.data(), reinterpret_cast<const unsigned char*>(in.data()), static_cast<int>(in.size()));
  if (n < 0) return std::nullopt;
  size_t padding = 0;
  if (in.back() == '=') padding++;
  if (in.size() >= 2 && in[in.size() - 2] == '=') padding++;
  out.resize(static_cast<size_t>(n) - padding);
  return out;
}

std::string base64_encode(const Bytes& in) {
  std::string out(4 * ((in.size() + 2) / 3), '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), in.data(), static_cast<int>(in.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

Bytes pbkdf2_sha512(std::string_view password, const Bytes& salt, int iterations, size_t length) {
  Bytes out(length);
  if (PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()), salt.data(), static_cast<int>(salt.size()),
                        iterations, EVP_sha512(), static_cast<int>(length), out.data()) != 1)
    throw std::runtime_error("PBKDF2 failed");
  return out;
}
}  // namespace

std::string to_hex_upper(const uint8_t* data, size_t size) {
  static const char digits[] = "0123456789ABCDEF";
  std::string out(size * 2, '\0');
  for (size_t i = 0; i < size; ++i) {
    out[2 * i] = digits[data[i] >> 4];
    out[2 * i + 1] = digits[data[i] & 0xF];
  }
  return out;
}

std::optional<Bytes> from_hex(std::string_view hex) {
  if (hex.size() % 2 != 0) return std::nullopt;
  Bytes out(hex.size() / 2);
  for (size_t i = 0; i < out.size(); ++i) {
    int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return out;
}

// A thread's AES-128-ECB context, set to `key` and direction. Created once per thread and then only re-keyed
// (cipher NULL keeps the provider's context): a fresh context per call showed in the login profile.
EVP_CIPHER_CTX* aes128_ecb_ctx(const Bytes& key, bool encrypt) {
  thread_local CipherCtx ctx(EVP_CIPHER_CTX_new(), EVP_CIPHER_CTX_free);
  thread_local bool has_cipher = false;
  if (!ctx) return nullptr;
  if (EVP_CipherInit_ex(ctx.get(), has_cipher ? nullptr : aes128_ecb(), nullptr, key.data(), nullptr, encrypt) != 1) {
    has_cipher = false;
    return nullptr;
  }
  has_cipher = true;
  return ctx.get();
}

Bytes aes128_ecb_encrypt(const Bytes& key, std::string_view plaintext) {
  if (key.size() != 16) throw std::invalid_argument("AES-128 key must be 16 bytes");
  EVP_CIPHER_CTX* ctx = aes128_ecb_ctx(key, true);
  if (!ctx) throw std::runtime_error("AES init failed");
  Bytes out(plaintext.size() + 16);
  int n1 = 0, n2 = 0;
  if (EVP_EncryptUpdate(ctx, out.data(), &n1, reinterpret_cast<const unsigned char*>(plaintext.data()),
                        static_cast<int>(plaintext.size())) != 1 ||
      EVP_EncryptFinal_ex(ctx, out.data() + n1, &n2) != 1)
    throw std::runtime_error("AES encrypt failed");
  out.resize(static_cast<size_t>(n1 + n2));
  return out;
}

std::optional<std::string> aes128_ecb_decrypt(const Bytes& key, const Bytes& ciphertext) {
  if (key.size() != 16 || ciphertext.empty() || ciphertext.size() % 16 != 0) return std::nullopt;
  EVP_CIPHER_CTX* ctx = aes128_ecb_ctx(key, false);
  if (!ctx) return std::nullopt;
  std::string out(ciphertext.size() + 16, '\0');
  int n1 = 0, n2 = 0;
  if (EVP_DecryptUpdate(ctx, reinterpret_cast<unsigned char*>(out.data()), &n1, ciphertext.data(),
                        static_cast<int>(ciphertext.size())) != 1 ||
      EVP_DecryptFinal_ex(ctx, reinterpret_cast<unsigned char*>(out.data()) + n1, &n2) != 1)
    return std::nullopt;
  out.resize(static_cast<size_t>(n1 + n2));
  return out;
}

Bytes random_bytes(size_t n) {
  Bytes out(n);
  if (RAND_bytes(out.data(), static_cast<int>(n)) != 1) throw std::runtime_error("CSPRNG failure");
  return out;
}

std::string random_hex(size_t n_bytes) { return to_hex_upper(random_bytes(n_bytes)); }

bool constant_time_equal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::optional<Pbkdf2Hash> parse_pbkdf2_hash(std::string_view encoded) {
  // $7$ITERATIONS$SALT$HASH
  if (encoded.substr(0, 3) != "$7$") return std::nullopt;
  encoded.remove_prefix(3);
  size_t d1 = encoded.find('$');
  if (d1 == std::string_view::npos) return std::nullopt;
  size_t d2 = encoded.find('$', d1 + 1);
  if (d2 == std::string_view::npos || encoded.find('$', d2 + 1) != std::string_view::npos) return std::nullopt;
  Pbkdf2Hash h;
  std::string_view iter = encoded.substr(0, d1);
  auto [ptr, ec] = std::from_chars(iter.data(), iter.data() + iter.size(), h.iterations);
  if (ec != std::errc() || ptr != iter.data() + iter.size() || h.iterations < 1 || h.iterations > 10'000'000)
    return std::nullopt;
  auto salt = base64_decode(encoded.substr(d1 + 1, d2 - d1 - 1));
  auto hash = base64_decode(encoded.substr(d2 + 1));
  if (!salt || !hash || salt->empty() || hash->size() != 64) return std::nullopt;
  h.salt = std::move(*salt);
  h.hash = std::move(*hash);
  return h;
}

std::string make_pbkdf2_hash(std::string_view password, int iterations) {
  Bytes salt = random_bytes(12);
  Bytes hash = pbkdf2_sha512(password, salt, iterations, 64);
  return "$7$" + std::to_string(iterations) + "$" + base64_encode(salt) + "$" + base64_encode(hash);
}

bool verify_pbkdf2(const Pbkdf2Hash& h, std::string_view password) {
  Bytes computed = pbkdf2_sha512(password, h.salt, h.iterations, h.hash.size());
  return CRYPTO_memcmp(computed.data(), h.hash.data(), computed.size()) == 0;
}

}  // namespace iotgate
