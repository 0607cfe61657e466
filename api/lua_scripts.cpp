#include "lua_scripts.h"

#include <hiredis/hiredis.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
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
bool is_command_name(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  });
}
}  // namespace

LuaLibrary::LuaLibrary(const std::string& dir, const std::vector<std::string>& required) {
  namespace fs = std::filesystem;
  // the command scripts in byte order of their names, as scripts/iotgate's glob lists them (LC_ALL=C)
  std::vector<std::string> names;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const fs::path& p = it->path();
    std::string name = p.stem().string();
    if (p.extension() == ".lua" && name != "lib" && is_command_name(name) && it->is_regular_file(ec)) names.push_back(name);
  }
  if (ec) throw std::runtime_error("cannot list " + dir + ": " + ec.message());
  std::sort(names.begin(), names.end());
  // the text lib.lua's end describes
  std::string text = "#!lua name=iotgate\n" + read_whole(dir + "/lib.lua") + "\n";
  for (const auto& name : names) {
    text += "command_script('" + name + "', function()\n" + read_whole(dir + "/" + name + ".lua") + "\nend)\n";
    names_.insert(name);
  }
  for (const auto& name : required) {
    if (!has(name)) throw std::runtime_error("cannot read " + dir + "/" + name + ".lua");
  }
  version_ = sha1_hex(text).substr(0, 12);
  code_ = text + "register_library('" + version_ + "')\n";
}

std::vector<std::string> LuaLibrary::fcall_command(const std::string& name, const std::string& prefix,
                                                   const std::vector<std::string>& args) const {
  if (!has(name)) throw std::out_of_range("no Lua script " + name);
  std::vector<std::string> cmd{"FCALL", "iotgate_" + version_ + "_" + name, "0", prefix};
  cmd.insert(cmd.end(), args.begin(), args.end());
  return cmd;
}

bool function_missing(const Reply& reply) {
  return reply && reply->type == REDIS_REPLY_ERROR && starts_with(std::string(reply->str, reply->len), "ERR Function not found");
}

Reply LuaLibrary::finish_call(RedisLink& redis, const std::string& name, const std::string& prefix,
                              const std::vector<std::string>& args, Reply reply) {
  // A few attempts: another client may load another version between this one's load and call.
  for (int attempt = 0; attempt < 3 && function_missing(reply); ++attempt) {
    std::lock_guard<std::mutex> lock(load_mutex_);
    auto cmd = fcall_command(name, prefix, args);
    reply = redis.command(cmd);  // another thread may have loaded it while this one waited
    if (!function_missing(reply)) break;
    auto replies = redis.pipeline({{"FUNCTION", "LOAD", "REPLACE", code_}, cmd});
    if (replies[0]->type == REDIS_REPLY_ERROR) {
      std::string error(replies[0]->str, replies[0]->len);
      if (classify_script_error(error).status == 503) throw RedisUnavailable(error);  // BUSY, LOADING, ...
      throw std::runtime_error("Redis refused the function library: " + error);  // e.g. Redis 6: no FUNCTION
    }
    std::string line = "iotgate-api: loaded the function library iotgate (version " + version_ + ") into Redis\n";
    (void)!::write(2, line.data(), line.size());
    reply = std::move(replies[1]);
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
