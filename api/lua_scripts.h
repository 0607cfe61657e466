// The admin CLI's Lua scripts (scripts/lua), run by iotgate-api exactly as scripts/iotgate runs them:
// lib.lua + one command script as one script, ARGV[1] the key prefix, then the command's arguments.
// Loaded once with SCRIPT LOAD and called with EVALSHA; a Redis that lost its script cache (restart,
// SCRIPT FLUSH) answers NOSCRIPT, and the script is loaded again.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "redis_link.h"

namespace iotgate::api {

struct LuaScript {
  std::string name;  // "task_create"
  std::string body;  // lib.lua + "\n" + task_create.lua
  std::string sha1;  // hex SHA-1 of body, as Redis names the script
};

class LuaScripts {
 public:
  // Reads lib.lua and NAME.lua for every name from dir; throws std::runtime_error when one is missing.
  LuaScripts(const std::string& dir, const std::vector<std::string>& names);
  const LuaScript& get(const std::string& name) const;  // throws std::out_of_range for an unknown name

 private:
  std::map<std::string, LuaScript> scripts_;
};

// The EVALSHA command of a script call.
std::vector<std::string> evalsha_command(const LuaScript& script, const std::string& prefix,
                                         const std::vector<std::string>& args);

// Finishes a script call whose first reply is `reply`: on NOSCRIPT loads the script and calls it again.
// Returns the final reply (a JSON string, or an error reply).
Reply finish_script_call(RedisLink& redis, const LuaScript& script, const std::string& prefix,
                         const std::vector<std::string>& args, Reply reply);

// What a script's error reply means over HTTP (lib.lua's refusal classes, see fail()).
struct ScriptRefusal {
  int status;           // 400, 403, 404, 409; 500 for a script bug; 503 when Redis is busy or loading
  std::string message;  // without the class
};
ScriptRefusal classify_script_error(const std::string& error);

}  // namespace iotgate::api
