// Access tokens of the HTTP API (scripts/iotgate token add): Redis keeps only the SHA-256 of a token,
// in P api:token:{sha256hex} (fields member, hash, created_at; docs/redis-schema.md).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "redis_link.h"

namespace iotgate::api {

std::string sha256_hex(const std::string& data);  // 64 lower-case hex digits

// The lookup of a token's hash: HMGET P api:token:{hash} member hash.
std::vector<std::string> token_lookup_command(const std::string& prefix, const std::string& token_hash);

// The member a lookup reply grants, or nullopt: the stored hash must equal the presented token's hash,
// compared in constant time (the key lookup alone would compare in Redis' hash table).
std::optional<std::string> member_of(const Reply& lookup_reply, const std::string& token_hash);

}  // namespace iotgate::api
