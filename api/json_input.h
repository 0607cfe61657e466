// Request bodies: JSON parsed with a nesting cap, and the seed's fields read as the strings the Lua
// scripts take (a field may be a JSON string or an integer: the seed shows "from_version_size":"" but
// clients send numbers too). A bad body or field throws ApiError(400) naming the field.
#pragma once

#include <rapidjson/document.h>

#include <optional>
#include <stdexcept>
#include <string>

namespace iotgate::api {

// A refusal: the HTTP status and the message of {"code":status,"msg":message}.
struct ApiError : std::runtime_error {
  ApiError(int status, const std::string& msg) : std::runtime_error(msg), status(status) {}
  int status;
};

// Parses a request body that must be a JSON object (an empty body is {}). Nesting deeper than
// max_depth, malformed JSON or another type is ApiError(400).
rapidjson::Document parse_json_object(const std::string& body, size_t max_depth);

// Field `name` of object `obj` (`path` names it in messages, e.g. "scope.category"): nullopt when
// absent or null; a string as is; an integer in decimal; anything else ApiError(400).
std::optional<std::string> scalar_field(const rapidjson::Value& obj, const char* name, const std::string& path);
// Like scalar_field, but absent is ApiError(400, "missing field ...").
std::string required_field(const rapidjson::Value& obj, const char* name, const std::string& path);
// An array of strings, joined with ',' (the CLI's id lists); nullopt when absent or null.
std::optional<std::string> id_list_field(const rapidjson::Value& obj, const char* name, const std::string& path);
// A JSON object field re-serialized (member order kept: order objects sort by the order written);
// "" when absent or null; anything but an object ApiError(400).
std::string object_field_text(const rapidjson::Value& obj, const char* name, const std::string& path);

// A query-string or body integer within [lo, hi] (offset, limit); ApiError(400) names `path`.
long long bounded_integer(const std::string& text, long long lo, long long hi, const std::string& path);

// JSON string literal of s (quotes and escapes).
std::string json_quote(const std::string& s);

}  // namespace iotgate::api
