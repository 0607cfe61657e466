// Identifier rules shared by logins, topics and the store (docs/redis-schema.md, "Identifiers").
#pragma once
#include <cstdint>
#include <string_view>

namespace iotgate {

bool is_hex(std::string_view s, size_t length);
// Lierda OpenID / ProductID: 8 hex digits. ProductKey / DeviceSecret: 32 hex digits.
inline bool is_lierda_id(std::string_view s) { return is_hex(s, 8); }
inline bool is_hex_key(std::string_view s) { return is_hex(s, 32); }
// Lierda NodeEui: 4-32 ASCII letters and digits.
bool is_node_eui(std::string_view s);
// KRT ProductID/DeviceID, EMU product key / tenant / device: 1-64 of A-Z a-z 0-9 _ -.
bool is_plain_id(std::string_view s);
// Service account names: 1-64 of A-Z a-z 0-9 _ - . @
bool is_account_name(std::string_view s);
// True when s can be substituted into a topic as one level: non-empty, no + # / or NUL.
bool is_topic_level_safe(std::string_view s);
// A decimal integer from a device or a client id, in its one canonical spelling: digits with an optional '-', no
// leading zero, no "-0", no '+'. "01" and "1" would otherwise name one number in two spellings (two client ids
// with one password).
bool parse_decimal(std::string_view s, int64_t& out);

}  // namespace iotgate
