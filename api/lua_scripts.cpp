#include "lua_scripts.h"

#include <hiredis/hiredis.h>
#include <openssl/evp.h>

#include <fstream>
#include <sstream>
#include <stdexcept>

namespace iotgate::api {

namespace {
std::string read_whole(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}
std::string sha1_hex(const std::string& data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), md, &len, EVP_sha1(), nullptr) != 1) throw std::runtime_error("SHA-1 failed");
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    out += hex[md[i] >> 4];
    out += hex[md[i] & 15];
  }
  return out;
}
bool starts_with(const std::string& s, const char* p) { return s.rfind(p, 0) == 0; }
}  // namespace

LuaScripts::LuaScripts(const std::string& dir, const std::vector<std::string>& names) {
  const std::string lib = read_whole(dir + "/lib.lua");
  for (const auto& name : names) {
    LuaScript s{name, lib + "\n" + read_whole(dir + "/" + name + ".lua"), ""};
    s.sha1 = sha1_hex(s.body);
    scripts_.emplace(name, std::move(s));
  }
}

const LuaScript& LuaScripts::get(const std::string& name) const { return scripts_.at(name); }

std::vector<std::string> evalsha_command(const LuaScript& script, const std::string& prefix,
                                         const std::vector<std::string>& args) {
  std::vector<std::string> cmd{"EVALSHA", script.sha1, "0", prefix};
  cmd.insert(cmd.end(), args.begin(), args.end());
  return cmd;
}

Reply finish_script_call(RedisLink& redis, const LuaScript& script, const std::string& prefix,
                         const std::vector<std::string>& args, Reply reply) {
  if (reply->type == REDIS_REPLY_ERROR && starts_with(std::string(reply->str, reply->len), "NOSCRIPT")) {
    auto replies = redis.pipeline({{"SCRIPT", "LOAD", script.body}, evalsha_command(script, prefix, args)});
    return std::move(replies[1]);
  }
  return reply;
}

ScriptRefusal classify_script_error(const std::string& error) {
  static const std::pair<const char*, int> classes[] = {
      {"usage: ", 400}, {"notfound: ", 404}, {"conflict: ", 409}, {"forbidden: ", 403}};
  for (const auto& [mark, status] : classes) {
    if (starts_with(error, mark)) return {status, error.substr(std::string(mark).size())};
  }
  if (starts_with(error, "internal error")) return {500, "internal error"};
  // Redis' own errors start with an upper-case code (ERR, BUSY, LOADING, OOM, ...): not a refusal
  size_t i = 0;
  while (i < error.size() && error[i] >= 'A' && error[i] <= 'Z') ++i;
  if (i >= 2 && (i == error.size() || error[i] == ' ')) {
    std::string code = error.substr(0, i);
    if (code == "BUSY" || code == "LOADING" || code == "MASTERDOWN" || code == "TRYAGAIN") return {503, "redis unavailable"};
    return {500, "internal error"};
  }
  // lib.lua's refusals without a class: a value the script judged invalid
  return {400, error};
}

}  // namespace iotgate::api
