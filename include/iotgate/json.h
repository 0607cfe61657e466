// How JSON from devices is parsed.
#pragma once
#include <rapidjson/reader.h>

namespace iotgate {

// Iterative (a deeply nested payload cannot exhaust the broker thread's stack), trailing commas accepted (the
// seeds' own samples carry them); NaN and Infinity stay refused, since a MessageId must be echoed back as JSON.
inline constexpr unsigned kDeviceJson = rapidjson::kParseIterativeFlag | rapidjson::kParseTrailingCommasFlag;

}  // namespace iotgate
