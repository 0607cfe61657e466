// How JSON from devices is parsed.
#pragma once
#include <rapidjson/document.h>
#include <rapidjson/reader.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <optional>
#include <string>
#include <string_view>

#include "iotgate/ids.h"

namespace iotgate {

// Iterative (a deeply nested payload cannot exhaust the broker thread's stack), trailing commas accepted (the
// seeds' own samples carry them); NaN and Infinity stay refused, since a MessageId must be echoed back as JSON.
inline constexpr unsigned kDeviceJson = rapidjson::kParseIterativeFlag | rapidjson::kParseTrailingCommasFlag;

// A value as compact JSON text.
inline std::string json_text(const rapidjson::Value& v) {
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w(buf);
  v.Accept(w);
  return std::string(buf.GetString(), buf.GetSize());
}

// A string as a JSON string literal, escaped.
inline std::string json_quoted(std::string_view s) {
  rapidjson::Value v(s.data(), static_cast<rapidjson::SizeType>(s.size()));
  return json_text(v);
}

// A member a device may send as a string or an integer (versions, ids) as text; nullopt when absent or else.
inline std::optional<std::string> text_or_number(const rapidjson::Value& obj, const char* name) {
  auto it = obj.FindMember(name);
  if (it == obj.MemberEnd()) return std::nullopt;
  if (it->value.IsString()) return std::string(it->value.GetString(), it->value.GetStringLength());
  if (it->value.IsInt64()) return std::to_string(it->value.GetInt64());
  if (it->value.IsUint64()) return std::to_string(it->value.GetUint64());
  return std::nullopt;
}

// An integer a device may send as a number or as a numeric string (canonical, see parse_decimal).
inline std::optional<int64_t> int_like(const rapidjson::Value& v) {
  if (v.IsInt64()) return v.GetInt64();
  int64_t n = 0;
  if (v.IsString() && parse_decimal(std::string_view(v.GetString(), v.GetStringLength()), n)) return n;
  return std::nullopt;
}
inline std::optional<int64_t> int_member(const rapidjson::Value& obj, const char* name) {
  auto it = obj.FindMember(name);
  if (it == obj.MemberEnd()) return std::nullopt;
  return int_like(it->value);
}

inline std::optional<std::string_view> string_member(const rapidjson::Value& obj, const char* name) {
  auto it = obj.FindMember(name);
  if (it == obj.MemberEnd() || !it->value.IsString()) return std::nullopt;
  return std::string_view(it->value.GetString(), it->value.GetStringLength());
}

// The MessageId / ID of a request as JSON text, to echo in the same JSON type it came in ("null" when absent or
// neither a number nor a string).
inline std::string echo_id(const rapidjson::Value& obj, const char* name) {
  auto it = obj.FindMember(name);
  if (it == obj.MemberEnd() || !(it->value.IsNumber() || it->value.IsString())) return "null";
  return json_text(it->value);
}

// Text from a device that is stored and shown (versions, ids): 1..max bytes, no control characters.
inline bool safe_text(std::string_view s, size_t max) {
  if (s.empty() || s.size() > max) return false;
  for (unsigned char c : s)
    if (c < 0x20 || c == 0x7f) return false;
  return true;
}

}  // namespace iotgate
