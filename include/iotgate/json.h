// How JSON from devices is parsed.
#pragma once
#include <rapidjson/document.h>
#include <rapidjson/reader.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <optional>
#include <string>
#include <string_view>

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

}  // namespace iotgate
