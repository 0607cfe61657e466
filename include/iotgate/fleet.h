// The fleet announcement (`kind fleet` on the commands stream): what a broker's batch of logins and logouts tells
// the other brokers on the same Redis. RedisStore::touch_many writes it, Gate::on_fleet_event reads it. Besides
// `kind` and `broker` it has up to three fields, each a list of entries in one string, not a field per entry: a
// login storm's XADD, the XREADs of every broker and their hiredis replies then handle a few strings per batch,
// not four per login.
//   claims   client ids that sessions on this broker took; number: when, wall-clock ms
//   offline  devices whose session on this broker ended; text "product:device", number: Unix seconds
//   alive    "1": a heartbeat (shares fleet-wide limits among the live brokers)
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

namespace iotgate::fleet {

// Appends an entry "<number> <length> <text>" to a list: the text may hold any byte.
void append(std::string& list, int64_t number, std::string_view text);
// Takes the next entry off the front of `list`; false at its end or where it is malformed (then the rest is left).
bool next(std::string_view& list, int64_t& number, std::string_view& text);

}  // namespace iotgate::fleet
