// How JSON from devices is parsed.
#pragma once
#include <rapidjson/document.h>
#include <rapidjson/reader.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

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

}  // namespace iotgate
