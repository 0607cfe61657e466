// MQTT topic and filter helpers, without mosquitto.
#pragma once
#include <string>
#include <string_view>

namespace iotgate {

bool is_valid_topic(std::string_view topic);    // non-empty, no + # or NUL
bool is_valid_filter(std::string_view filter);  // non-empty, + and # only as whole levels, # last, no NUL
// True when topic (no wildcards) matches filter.
bool topic_matches(std::string_view filter, std::string_view topic);
// True when every topic matched by `filter` is also matched by `pattern` (both valid filters).
bool filter_within(std::string_view pattern, std::string_view filter);

}  // namespace iotgate
