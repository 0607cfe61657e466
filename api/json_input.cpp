#include "json_input.h"

#include <rapidjson/error/en.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <charconv>

namespace iotgate::api {

namespace {
// The deepest nesting of [ and { outside strings, stopping once it exceeds `cap`: the parser below is
// iterative, but a document thousands deep is still refused before it is built.
bool nesting_within(const std::string& s, size_t cap) {
  size_t depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > cap) return false;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return true;
}
}  // namespace

rapidjson::Document parse_json_object(const std::string& body, size_t max_depth) {
  rapidjson::Document doc;
  size_t first = body.find_first_not_of(" \t\r\n");
  if (first == std::string::npos) {
    doc.SetObject();
    return doc;
  }
  if (!nesting_within(body, max_depth))
    throw ApiError(400, "invalid JSON body: nested deeper than " + std::to_string(max_depth) + " levels");
  doc.Parse<rapidjson::kParseIterativeFlag | rapidjson::kParseValidateEncodingFlag>(body.data(), body.size());
  if (doc.HasParseError())
    throw ApiError(400, std::string("invalid JSON body: ") + rapidjson::GetParseError_En(doc.GetParseError()) +
                            " at offset " + std::to_string(doc.GetErrorOffset()));
  if (!doc.IsObject()) throw ApiError(400, "invalid JSON body: expected an object");
  return doc;
}

std::optional<std::string> scalar_field(const rapidjson::Value& obj, const char* name, const std::string& path) {
  auto it = obj.FindMember(name);
  if (it == obj.MemberEnd() || it->value.IsNull()) return std::nullopt;
  const auto& v = it->value;
  if (v.IsString()) {
    std::string s(v.GetString(), v.GetStringLength());
    if (s.find('\0') != std::string::npos) throw ApiError(400, "invalid " + path + ": contains NUL");
    return s;
  }
  if (v.IsInt64()) return std::to_string(v.GetInt64());
  if (v.IsUint64()) return std::to_string(v.GetUint64());
  throw ApiError(400, "invalid " + path + ": expected a string or an integer");
}

std::string required_field(const rapidjson::Value& obj, const char* name, const std::string& path) {
  auto v = scalar_field(obj, name, path);
  if (!v) throw ApiError(400, "missing field " + path);
  return *v;
}

std::optional<std::string> id_list_field(const rapidjson::Value& obj, const char* name, const std::string& path) {
  auto it = obj.FindMember(name);
  if (it == obj.MemberEnd() || it->value.IsNull()) return std::nullopt;
  if (!it->value.IsArray()) throw ApiError(400, "invalid " + path + ": expected an array of device ids");
  std::string out;
  for (const auto& e : it->value.GetArray()) {
    if (!e.IsString()) throw ApiError(400, "invalid " + path + ": expected an array of device ids (strings)");
    std::string id(e.GetString(), e.GetStringLength());
    if (id.empty() || id.find_first_of(",\0", 0, 2) != std::string::npos)
      throw ApiError(400, "invalid " + path + ": a device id is 1-64 of A-Z a-z 0-9 _ -");
    if (!out.empty()) out += ',';
    out += id;
  }
  return out;
}

std::string object_field_text(const rapidjson::Value& obj, const char* name, const std::string& path) {
  auto it = obj.FindMember(name);
  if (it == obj.MemberEnd() || it->value.IsNull()) return "";
  if (!it->value.IsObject()) throw ApiError(400, "invalid " + path + ": expected an object");
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w(buf);
  it->value.Accept(w);
  return std::string(buf.GetString(), buf.GetSize());
}

long long bounded_integer(const std::string& text, long long lo, long long hi, const std::string& path) {
  long long v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc() || p != text.data() + text.size() || v < lo || v > hi)
    throw ApiError(400, "invalid " + path + ": an integer from " + std::to_string(lo) + " to " + std::to_string(hi));
  return v;
}

std::string json_quote(const std::string& s) {
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w(buf);
  w.String(s.data(), static_cast<rapidjson::SizeType>(s.size()));
  return std::string(buf.GetString(), buf.GetSize());
}

}  // namespace iotgate::api
