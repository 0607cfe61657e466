// The admin CLI's Lua scripts (scripts/lua), run by iotgate-api exactly as scripts/iotgate runs them: lib.lua
// and every command script as ONE Redis function library (the end of lib.lua describes its text, which both
// build alike), each command the function iotgate_<VERSION>_<name>, called as
//   FCALL iotgate_<VERSION>_<name> 0 <key prefix> <command arguments...>
// lib.lua's definitions run once, when the library is loaded, not at every call. A Redis without this version
// of the library (a fresh one, one restarted without its data, FUNCTION FLUSH, or another version loaded by
// other scripts) answers "ERR Function not found": the library is loaded (FUNCTION LOAD REPLACE) and the
// command called again.
#pragma once

#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "redis_link.h"

namespace iotgate::api {

class LuaLibrary {
 public:
  // Reads lib.lua and every other NAME.lua of dir (NAME of A-Z a-z 0-9 _); throws std::runtime_error when
  // lib.lua or one of `required` is missing.
  LuaLibrary(const std::string& dir, const std::vector<std::string>& required = {});
  const std::string& code() const { return code_; }        // the text FUNCTION LOAD takes
  const std::string& version() const { return version_; }  // 12 hex digits
  bool has(const std::string& name) const { return names_.count(name) != 0; }

  // The FCALL of command `name`; throws std::out_of_range for an unknown name.
  std::vector<std::string> fcall_command(const std::string& name, const std::string& prefix,
                                         const std::vector<std::string>& args) const;

  // Finishes a call whose first reply is `reply`: when Redis has no such function, loads the library and calls
  // again (one thread of the process loads it at a time; the others then find it). Returns the final reply (a
  // JSON string, or an error reply). Throws std::runtime_error when Redis refuses the library.
  Reply finish_call(RedisLink& redis, const std::string& name, const std::string& prefix,
                    const std::vector<std::string>& args, Reply reply);

 private:
  std::string code_, version_;
  std::set<std::string> names_;
  std::mutex load_mutex_;
};

// Whether `reply` is Redis' answer to an FCALL of a function it does not have.
bool function_missing(const Reply& reply);

// What a script's error reply means over HTTP (lib.lua's refusal classes, see fail()).
struct ScriptRefusal {
  int status;           // 400, 403, 404, 409; 500 for a script bug; 503 when Redis is busy or loading
  std::string message;  // without the class
};
ScriptRefusal classify_script_error(const std::string& error);

}  // namespace iotgate::api
