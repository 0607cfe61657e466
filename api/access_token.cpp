#include "access_token.h"

#include <hiredis/hiredis.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <stdexcept>

namespace iotgate::api {

std::string sha256_hex(const std::string& data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr) != 1) throw std::runtime_error("SHA-256 failed");
  static const char* hex = "0123456789abcdef";
  std::string out;
  out.reserve(len * 2);
  for (unsigned int i = 0; i < len; ++i) {
    out += hex[md[i] >> 4];
    out += hex[md[i] & 15];
  }
  return out;
}

std::vector<std::string> token_lookup_command(const std::string& prefix, const std::string& token_hash) {
  return {"HMGET", prefix + "api:token:" + token_hash, "member", "hash"};
}

std::optional<std::string> member_of(const Reply& reply, const std::string& token_hash) {
  if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2) return std::nullopt;
  const redisReply* member = reply->element[0];
  const redisReply* hash = reply->element[1];
  if (member->type != REDIS_REPLY_STRING || hash->type != REDIS_REPLY_STRING) return std::nullopt;
  if (hash->len != token_hash.size() || CRYPTO_memcmp(hash->str, token_hash.data(), token_hash.size()) != 0)
    return std::nullopt;
  std::string name(member->str, member->len);
  if (name.empty()) return std::nullopt;
  return name;
}

}  // namespace iotgate::api
