#include "iotgate/store.h"

#include <sys/time.h>

#include <algorithm>
#include <charconv>
#include <deque>
#include <map>
#include <set>

#include "iotgate/fleet.h"

namespace iotgate {
namespace {

// Sets device fields other than the login/logout times (e.g. activated) and announces each change on the changes
// stream; a deleted device stays deleted. KEYS[1] the changes stream, KEYS[2..] device keys; ARGV per device, in
// KEYS order: its id, its field count, then field/value pairs.
constexpr const char* kTouchManyScript = R"lua(
local i = 1
for k = 2, #KEYS do
  local key, id, n = KEYS[k], ARGV[i], tonumber(ARGV[i + 1])
  local changed = false
  if redis.call('EXISTS', key) == 1 then
    for j = 1, n do
      local f, v = ARGV[i + 2 * j], ARGV[i + 2 * j + 1]
      if redis.call('HGET', key, f) ~= v then
        redis.call('HSET', key, f, v)
        changed = true
      end
    end
  end
  i = i + 2 + 2 * n
  if changed then redis.call('XADD', KEYS[1], 'MAXLEN', '~', '10000', '*', 'kind', 'device', 'id', id) end
end
return 1
)lua";

// Creates the device when asked and allowed, gives it the candidate secret if it has none, stores extra fields.
// The secret a device is told is always the one this script leaves in Redis.
constexpr const char* kIssueScript = R"lua(
if redis.call('EXISTS', KEYS[1]) == 0 then return {'unknown_product'} end
if redis.call('HGET', KEYS[1], 'enabled') == '0' then return {'disabled'} end
local now = redis.call('TIME')[1]
if redis.call('EXISTS', KEYS[2]) == 0 then
  if ARGV[3] ~= '1' then return {'unknown_device'} end
  local limit = tonumber(ARGV[6]) or 0
  local by_device = ARGV[4] == 'auto' or ARGV[4] == 'auth'  -- created by a device's own request: counted, capped
  if limit > 0 and by_device then
    local made = tonumber(redis.call('HGET', KEYS[1], 'auto_created') or '0') or 0
    if made >= limit then return {'limit'} end
  end
  redis.call('HSET', KEYS[2], 'enabled', '1', 'origin', ARGV[4], 'secret', ARGV[5], 'created_at', now)
  redis.call('SADD', KEYS[3], ARGV[2])
  if by_device then redis.call('HINCRBY', KEYS[1], 'auto_created', 1) end
else
  if redis.call('HGET', KEYS[2], 'enabled') == '0' then return {'disabled'} end
  local s = redis.call('HGET', KEYS[2], 'secret')
  if not s or s == '' then redis.call('HSET', KEYS[2], 'secret', ARGV[5]) end
end
-- A session key is issued once: when another broker has just stored one that is still valid (two brokers rekeying
-- one device at once), it stays, and both tell the device this one.
local key_expires = tonumber(redis.call('HGET', KEYS[2], 'session_key_expires') or '0') or 0
local key_valid = (redis.call('HGET', KEYS[2], 'session_key') or '') ~= '' and key_expires > tonumber(now)
local SESSION_FIELDS = { session_id = true, nonce = true, session_key = true, session_key_expires = true }
for i = 7, #ARGV, 2 do
  if not (key_valid and SESSION_FIELDS[ARGV[i]]) then redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
end
redis.call('SETNX', KEYS[5], '1')
redis.call('XADD', KEYS[4], 'MAXLEN', '~', '10000', '*', 'kind', 'device', 'id', ARGV[1] .. ':' .. ARGV[2])
return {'ok', redis.call('HGETALL', KEYS[2])}
)lua";

// Records a device's OTA progress once (a repeated write is a no-op), counts a success once, appends the OTA log,
// and tells every broker on the commands stream (kind ota_progress), so that a device that moves to another broker
// is known there. A finished device (succeeded, failed, timed out) stays finished: a broker that had not heard of it
// yet gets the stored progress back instead (broker ""). A deleted task gets nothing.
constexpr const char* kProgressScript = R"lua(
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local prev = redis.call('HGET', KEYS[2], ARGV[1])
if prev == ARGV[2] then return 0 end
local was_success, finished = false, false
if prev then
  local ok, old = pcall(cjson.decode, prev)
  if ok and type(old) == 'table' then
    was_success = old.state == 'succeeded'
    finished = was_success or old.state == 'failed' or old.state == 'timed_out'
  end
end
local function announce(progress, broker)
  redis.call('XADD', KEYS[5], 'MAXLEN', '~', '10000', '*', 'kind', 'ota_progress', 'task', ARGV[6],
    'device', ARGV[1], 'progress', progress, 'broker', broker)
end
if finished then
  announce(prev, '')
  return 0
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
if ARGV[4] == '1' and not was_success then redis.call('HINCRBY', KEYS[1], 'upgrade_count', 1) end
if ARGV[3] ~= '0' then
  local id = redis.call('INCR', KEYS[4])
  redis.call('RPUSH', KEYS[3], cjson.encode({id = id, product_id = ARGV[5], task_id = ARGV[6], device_id = ARGV[1],
    device_mac = '', device_sn = '', status = tonumber(ARGV[3]), execute_time = ARGV[7]}))
  redis.call('LTRIM', KEYS[3], -100000, -1)
end
announce(ARGV[2], ARGV[8])
return 1
)lua";

// The set of a device's topics that hold a retained message (KEYS[1]), so that deleting the device (KEYS[2]) can clear
// them; nothing for a device that is gone. ARGV: topic, "1" (add) or "0" (remove), ...
constexpr const char* kRetainedScript = R"lua(
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
for i = 1, #ARGV, 2 do
  if ARGV[i + 1] == '1' then redis.call('SADD', KEYS[1], ARGV[i]) else redis.call('SREM', KEYS[1], ARGV[i]) end
end
return 1
)lua";

// Merges each sub-device's new result into the one stored.
constexpr const char* kEmuResultScript = R"lua(
for i = 1, #ARGV, 2 do
  local merged = cjson.decode(ARGV[i + 1])
  local prev = redis.call('HGET', KEYS[1], ARGV[i])
  if prev then
    local ok, old = pcall(cjson.decode, prev)
    if ok and type(old) == 'table' then
      for k, v in pairs(merged) do old[k] = v end
      merged = old
    end
  end
  redis.call('HSET', KEYS[1], ARGV[i], cjson.encode(merged))
end
return 1
)lua";

Fields fields_from_array(const redisReply* r) {
  Fields f;
  if (!r || r->type != REDIS_REPLY_ARRAY) return f;
  for (size_t i = 0; i + 1 < r->elements; i += 2) {
    const redisReply* k = r->element[i];
    const redisReply* v = r->element[i + 1];
    if (k->type == REDIS_REPLY_STRING && v->type == REDIS_REPLY_STRING)
      f.emplace(std::string(k->str, k->len), std::string(v->str, v->len));
  }
  return f;
}

int64_t as_number(const std::string& s) {
  int64_t n = 0;
  std::from_chars(s.data(), s.data() + s.size(), n);
  return n;
}

timeval to_timeval(int ms) { return timeval{ms / 1000, (ms % 1000) * 1000}; }

}  // namespace

RedisStore::RedisStore(const Config& config, std::string client_name)
    : config_(config), client_name_(std::move(client_name)) {
  if (!config_.redis_sentinels.empty())
    sentinel_.emplace(config_.redis_sentinels, config_.redis_master_name, config_.redis_sentinel_password);
}
RedisStore::~RedisStore() { disconnect(); }

void RedisStore::disconnect() {
  if (ctx_) redisFree(ctx_);
  ctx_ = nullptr;
}

void RedisStore::fail(const std::string& what) {
  error_ = what;
  if (ctx_ && ctx_->err) error_ += ": " + std::string(ctx_->errstr);
  disconnect();
}

bool RedisStore::connect() {
  disconnect();
  if (!sentinel_) return connect_to(HostPort{config_.redis_host, config_.redis_port});
  // The primary as the sentinels name it now, checked with ROLE: a sentinel that has not seen the failover yet may
  // name the old primary, which is down or, back, a replica (or a primary about to be demoted, which is why the
  // sentinels are asked rather than the last address redialled).
  std::string error;
  bool ok = sentinel_->resolve(std::chrono::milliseconds(config_.redis_timeout_ms),
                               [this](const HostPort& at, std::string* why) {
                                 if (!connect_to(at)) {
                                   *why = error_;
                                   return false;
                                 }
                                 Reply r = command({"ROLE"});
                                 std::string role = role_of(r.get());
                                 if (role == "master") return true;
                                 *why = r ? "not a primary (ROLE " + (role.empty() ? "?" : role) + ")" : error_;
                                 disconnect();
                                 return false;
                               },
                               &error);
  if (!ok) error_ = error;
  return ok;
}

bool RedisStore::primary_moved() {
  if (!sentinel_ || !ctx_) return false;
  return sentinel_->still_names(at_, std::chrono::milliseconds(config_.redis_timeout_ms)) == false;
}

bool RedisStore::connect_to(const HostPort& at) {
  disconnect();
  ctx_ = redisConnectWithTimeout(at.host.c_str(), at.port, to_timeval(config_.redis_timeout_ms));
  if (!ctx_ || ctx_->err) {
    error_ = "cannot connect to redis " + to_string(at) + (ctx_ ? ": " + std::string(ctx_->errstr) : "");
    disconnect();
    return false;
  }
  redisSetTimeout(ctx_, to_timeval(config_.redis_timeout_ms));
  redisEnableKeepAlive(ctx_);
  if (!config_.redis_password.empty()) {
    Reply r = command({"AUTH", config_.redis_password});
    if (!r || r->type == REDIS_REPLY_ERROR) {
      error_ = "redis AUTH failed";  // never echo the password
      disconnect();
      return false;
    }
  }
  if (config_.redis_db != 0) {
    Reply r = command({"SELECT", std::to_string(config_.redis_db)});
    if (!r || r->type == REDIS_REPLY_ERROR) {
      error_ = "redis SELECT " + std::to_string(config_.redis_db) + " failed";
      disconnect();
      return false;
    }
  }
  if (!client_name_.empty()) {
    // Only to tell the plugin's connections apart in CLIENT LIST: a Redis that refuses the command is used anyway.
    Reply r = command({"CLIENT", "SETNAME", client_name_});
    if (!r) return false;  // lost, or LOADING / BUSY: away (error_ says why)
  }
  at_ = at;
  return true;
}

RedisStore::Reply RedisStore::command(const std::vector<std::string>& argv) {
  return command_of_views(std::vector<std::string_view>(argv.begin(), argv.end()));
}

RedisStore::Reply RedisStore::command_of_views(const std::vector<std::string_view>& argv) {
  if (!ctx_) return Reply(nullptr, freeReplyObject);
  std::vector<const char*> args;
  std::vector<size_t> lens;
  args.reserve(argv.size());
  lens.reserve(argv.size());
  for (const auto& a : argv) {
    args.push_back(a.data());
    lens.push_back(a.size());
  }
  auto* r = static_cast<redisReply*>(redisCommandArgv(ctx_, static_cast<int>(argv.size()), args.data(), lens.data()));
  if (!r) fail("redis " + std::string(argv[0]));
  // A Redis still loading its data set after a restart (LOADING), stuck in a script (BUSY), no longer the
  // primary (READONLY: a failover demoted it; MASTERDOWN: a replica cut off from its primary), or a primary that
  // cannot reach the replicas min-replicas-to-write asks for (NOREPLICAS: cut off, as an old primary is after a
  // failover) refuses every command for a while: that is Redis being away, not a write refused, so the caller
  // holds the write and retries, as after a lost connection (dropping it would lose login/logout times, replay
  // protection). With sentinels the retry asks them for the primary again.
  if (r && r->type == REDIS_REPLY_ERROR) {
    std::string_view text(r->str, r->len);
    if (text.substr(0, 8) == "LOADING " || text.substr(0, 5) == "BUSY " || text.substr(0, 9) == "READONLY " ||
        text.substr(0, 11) == "MASTERDOWN " || text.substr(0, 11) == "NOREPLICAS ") {
      std::string what = "redis " + std::string(argv[0]) + ": " + std::string(text.substr(0, text.find(' ')));
      freeReplyObject(r);
      fail(what);
      return Reply(nullptr, freeReplyObject);
    }
  }
  return Reply(r, freeReplyObject);
}

StoreResult RedisStore::touch_many(const std::vector<StoreJob>& jobs) {
  // Login and logout times (most of the writes in a login storm) go to two hashes per product, device -> Unix
  // seconds, one plain HSET each per batch: a script that read every device first cost redis-server about 15 us
  // per device. They only grow because the broker sends the maximum it knows, in order, so of a device's two
  // times in one HSET the later, which Redis keeps, is the larger. Activations take the script.
  // The arguments are views into the jobs and into `made`, whose strings stay put (a deque grows at its ends).
  std::deque<std::string> made;
  auto number = [&made](int64_t n) -> std::string_view { return made.emplace_back(std::to_string(n)); };
  struct ProductTimes {
    std::string online_key, offline_key;
    std::vector<std::string_view> online, offline;  // HSET's arguments
  };
  std::vector<std::pair<std::string_view, ProductTimes>> times;  // by product: a batch has one or a few
  std::vector<std::string> activated_keys;
  std::vector<std::string_view> activated_args;
  // What the other brokers on this Redis must hear (fleet.h): the client ids claimed by logins, and the logout
  // times that refuse a replayed type-1 password; and that this broker is alive (a heartbeat).
  std::string claims, offline;
  bool alive = false;
  for (const StoreJob& job : jobs) {
    const Touch& t = job.touch;
    if (!t.claim.empty()) fleet::append(claims, t.claim_at, t.claim);
    alive = alive || t.alive;
    if (t.product.empty()) continue;  // a claim alone (a session without a device), or a heartbeat
    if (t.last_offline > 0) fleet::append(offline, t.last_offline, t.product + ":" + t.device);
    if (t.last_online > 0 || t.last_offline > 0) {
      auto it = std::find_if(times.begin(), times.end(), [&](const auto& p) { return p.first == t.product; });
      if (it == times.end()) {
        times.emplace_back(t.product, ProductTimes{key("last_online:" + t.product), key("last_offline:" + t.product), {}, {}});
        it = times.end() - 1;
      }
      if (t.last_online > 0) it->second.online.insert(it->second.online.end(), {t.device, number(t.last_online)});
      if (t.last_offline > 0) it->second.offline.insert(it->second.offline.end(), {t.device, number(t.last_offline)});
    }
    if (t.activated) {
      activated_keys.push_back(key("device:" + t.product + ":" + t.device));
      std::string_view id = made.emplace_back(t.product + ":" + t.device);
      activated_args.insert(activated_args.end(), {id, "1", "activated", "1"});
    }
  }
  StoreResult res;
  auto run = [&](const std::vector<std::string_view>& argv) {
    Reply r = command_of_views(argv);
    if (r && r->type != REDIS_REPLY_ERROR) return true;
    if (r) error_ = std::string(r->str, r->len);
    res.error = "unavailable";
    return false;
  };
  auto hset = [&](const std::string& hash_key, const std::vector<std::string_view>& pairs) {
    if (pairs.empty()) return true;
    std::vector<std::string_view> argv = {"HSET", hash_key};
    argv.insert(argv.end(), pairs.begin(), pairs.end());
    return run(argv);
  };
  for (const auto& [product, t] : times)
    if (!hset(t.online_key, t.online) || !hset(t.offline_key, t.offline)) return res;
  if (!activated_keys.empty()) {
    const std::string changes = key("changes"), count = std::to_string(activated_keys.size() + 1);
    std::vector<std::string_view> argv = {"EVAL", kTouchManyScript, count, changes};
    argv.insert(argv.end(), activated_keys.begin(), activated_keys.end());
    argv.insert(argv.end(), activated_args.begin(), activated_args.end());
    if (!run(argv)) return res;
  }
  if ((!claims.empty() || !offline.empty() || alive) && !config_.broker_id.empty()) {
    const std::string stream = key("commands");
    std::vector<std::string_view> argv = {"XADD", stream, "MAXLEN", "~", "10000", "*", "kind", "fleet",
                                          "broker", config_.broker_id};
    if (!claims.empty()) argv.insert(argv.end(), {"claims", claims});
    if (!offline.empty()) argv.insert(argv.end(), {"offline", offline});
    if (alive) argv.insert(argv.end(), {"alive", "1"});
    if (!run(argv)) return res;
  }
  res.ok = true;
  return res;
}

std::optional<std::string> RedisStore::last_change_id() { return last_stream_id(key("changes")); }
std::optional<std::string> RedisStore::last_command_id() { return last_stream_id(key("commands")); }

std::optional<std::string> RedisStore::last_stream_id(const std::string& stream) {
  Reply r = command({"XREVRANGE", stream, "+", "-", "COUNT", "1"});
  if (!r || r->type != REDIS_REPLY_ARRAY) return std::nullopt;
  if (r->elements == 0) return std::string("0-0");
  const redisReply* entry = r->element[0];
  if (entry->type != REDIS_REPLY_ARRAY || entry->elements < 1 || entry->element[0]->type != REDIS_REPLY_STRING)
    return std::nullopt;
  return std::string(entry->element[0]->str, entry->element[0]->len);
}

std::optional<bool> RedisStore::stream_holds(const std::string& stream, const std::string& id) {
  Reply r = id == "0-0" ? command({"XLEN", stream}) : command({"XRANGE", stream, id, id});
  if (!r) return std::nullopt;
  if (id == "0-0") return r->type == REDIS_REPLY_INTEGER ? std::optional<bool>(r->integer == 0) : std::nullopt;
  if (r->type != REDIS_REPLY_ARRAY) return std::nullopt;
  return r->elements == 1;
}

std::optional<std::vector<std::string>> RedisStore::smembers(const std::string& k) {
  Reply r = command({"SMEMBERS", k});
  if (!r || r->type != REDIS_REPLY_ARRAY) return std::nullopt;
  std::vector<std::string> out;
  for (size_t i = 0; i < r->elements; ++i)
    if (r->element[i]->type == REDIS_REPLY_STRING) out.emplace_back(r->element[i]->str, r->element[i]->len);
  return out;
}

std::optional<std::vector<std::optional<Fields>>> RedisStore::hgetall_many(const std::vector<std::string>& keys) {
  if (!ctx_) return std::nullopt;
  std::vector<std::optional<Fields>> out;
  out.reserve(keys.size());
  constexpr size_t kBatch = 1000;  // pipelined: one round trip per batch
  for (size_t start = 0; start < keys.size(); start += kBatch) {
    size_t end = std::min(keys.size(), start + kBatch);
    for (size_t i = start; i < end; ++i) {
      const char* argv[2] = {"HGETALL", keys[i].c_str()};
      size_t lens[2] = {7, keys[i].size()};
      if (redisAppendCommandArgv(ctx_, 2, argv, lens) != REDIS_OK) return fail("redis pipeline"), std::nullopt;
    }
    for (size_t i = start; i < end; ++i) {
      void* raw = nullptr;
      if (redisGetReply(ctx_, &raw) != REDIS_OK || !raw) return fail("redis HGETALL"), std::nullopt;
      Reply r(static_cast<redisReply*>(raw), freeReplyObject);
      if (r->type != REDIS_REPLY_ARRAY) return fail("redis HGETALL type"), std::nullopt;
      if (r->elements == 0) out.emplace_back(std::nullopt);
      else out.emplace_back(fields_from_array(r.get()));
    }
  }
  return out;
}

std::optional<Fields> RedisStore::hgetall(const std::string& k, bool& ok) {
  Reply r = command({"HGETALL", k});
  ok = r && r->type == REDIS_REPLY_ARRAY;
  if (!ok || r->elements == 0) return std::nullopt;
  return fields_from_array(r.get());
}

bool RedisStore::load_all(const std::function<void(LoadRecord)>& sink) {
  using Kind = LoadRecord::Kind;
  auto product_ids = smembers(key("products"));
  if (!product_ids) return false;
  // The begin record says how many devices are coming, so the registry is sized once rather than rehashed on the
  // way (a rehash of hundreds of thousands stopped the broker thread for a quarter of a second).
  uint64_t devices = 0;
  for (const auto& id : *product_ids) {
    Reply n = command({"SCARD", key("devices:" + id)});
    if (!n) return false;
    if (n->type == REDIS_REPLY_INTEGER) devices += static_cast<uint64_t>(n->integer);
  }
  sink(LoadRecord{Kind::begin, {}, {}, Fields{{"devices", std::to_string(devices)}}});
  std::vector<std::string> keys;
  for (const auto& id : *product_ids) keys.push_back(key("product:" + id));
  auto products = hgetall_many(keys);
  if (!products) return false;
  for (size_t i = 0; i < product_ids->size(); ++i) {
    const std::string& product = (*product_ids)[i];
    if (!(*products)[i]) continue;
    sink(LoadRecord{Kind::product, product, {}, std::move(*(*products)[i])});
    // The devices a page of SSCAN at a time, each page in one pipeline, so memory does not grow with the fleet. A
    // set being rehashed may name a device twice: it is then loaded twice, the second replacing the first.
    std::string cursor = "0";
    do {
      Reply page = command({"SSCAN", key("devices:" + product), cursor, "COUNT", "1000"});
      if (!page || page->type != REDIS_REPLY_ARRAY || page->elements != 2 ||
          page->element[0]->type != REDIS_REPLY_STRING || page->element[1]->type != REDIS_REPLY_ARRAY)
        return page ? (fail("redis SSCAN reply"), false) : false;
      cursor.assign(page->element[0]->str, page->element[0]->len);
      std::vector<std::string> device_ids;
      for (size_t j = 0; j < page->element[1]->elements; ++j) {
        const redisReply* m = page->element[1]->element[j];
        if (m->type == REDIS_REPLY_STRING) device_ids.emplace_back(m->str, m->len);
      }
      if (!load_devices(product, device_ids, sink)) return false;
    } while (cursor != "0");
  }
  auto names = smembers(key("accounts"));
  if (!names) return false;
  keys.clear();
  for (const auto& n : *names) keys.push_back(key("account:" + n));
  auto accounts = hgetall_many(keys);
  if (!accounts) return false;
  for (size_t i = 0; i < names->size(); ++i)
    if ((*accounts)[i]) sink(LoadRecord{Kind::account, (*names)[i], {}, std::move(*(*accounts)[i])});
  if (!load_ota(sink)) return false;
  sink(LoadRecord{Kind::end, {}, {}, {}});
  return true;
}

bool RedisStore::load_devices(const std::string& product, const std::vector<std::string>& ids,
                              const std::function<void(LoadRecord)>& sink) {
  if (ids.empty()) return true;
  if (!ctx_) return false;
  // One pipeline: each device's hash, then its login and logout times from the per-product times hashes.
  for (const auto& id : ids) {
    const std::string k = key("device:" + product + ":" + id);
    const char* argv[2] = {"HGETALL", k.c_str()};
    size_t lens[2] = {7, k.size()};
    if (redisAppendCommandArgv(ctx_, 2, argv, lens) != REDIS_OK) return fail("redis pipeline"), false;
  }
  for (const char* times : {"last_online:", "last_offline:"}) {
    const std::string k = key(times + product);
    std::vector<const char*> argv = {"HMGET", k.c_str()};
    std::vector<size_t> lens = {5, k.size()};
    for (const auto& id : ids) {
      argv.push_back(id.c_str());
      lens.push_back(id.size());
    }
    if (redisAppendCommandArgv(ctx_, static_cast<int>(argv.size()), argv.data(), lens.data()) != REDIS_OK)
      return fail("redis pipeline"), false;
  }
  std::vector<Reply> replies;
  replies.reserve(ids.size() + 2);
  for (size_t i = 0; i < ids.size() + 2; ++i) {
    void* raw = nullptr;
    if (redisGetReply(ctx_, &raw) != REDIS_OK || !raw) return fail("redis HGETALL"), false;
    replies.emplace_back(static_cast<redisReply*>(raw), freeReplyObject);
    if (replies.back()->type != REDIS_REPLY_ARRAY) return fail("redis HGETALL / HMGET reply"), false;
  }
  const redisReply* online = replies[ids.size()].get();
  const redisReply* offline = replies[ids.size() + 1].get();
  for (size_t j = 0; j < ids.size(); ++j) {
    if (replies[j]->elements == 0) continue;  // gone since SSCAN named it
    Fields fields = fields_from_array(replies[j].get());
    // The later of the times hash and the device hash's own field (where data written before the times hashes
    // existed keeps its times).
    for (const auto& [times, field] : {std::pair{online, "last_online"}, std::pair{offline, "last_offline"}}) {
      if (j >= times->elements || times->element[j]->type != REDIS_REPLY_STRING) continue;
      std::string seen(times->element[j]->str, times->element[j]->len);
      std::string& value = fields[field];
      if (value.empty() || as_number(seen) > as_number(value)) value = std::move(seen);
    }
    sink(LoadRecord{LoadRecord::Kind::device, product, ids[j], std::move(fields)});
  }
  return true;
}

bool RedisStore::load_ota(const std::function<void(LoadRecord)>& sink) {
  using Kind = LoadRecord::Kind;
  auto ids = smembers(key("ota:tasks"));
  if (!ids) return false;
  std::vector<std::string> keys;
  for (const auto& id : *ids) keys.push_back(key("ota:task:" + id));
  auto tasks = hgetall_many(keys);
  if (!tasks) return false;
  keys.clear();
  for (const auto& id : *ids) keys.push_back(key("ota:progress:" + id));
  auto progress = hgetall_many(keys);
  if (!progress) return false;
  for (size_t i = 0; i < ids->size(); ++i) {
    const std::string& id = (*ids)[i];
    if (!(*tasks)[i]) continue;
    sink(LoadRecord{Kind::ota_task, id, {}, std::move(*(*tasks)[i])});
    if ((*progress)[i]) sink(LoadRecord{Kind::ota_progress, id, {}, std::move(*(*progress)[i])});
    auto pushed = smembers(key("ota:pushed:" + id));
    if (!pushed) return false;
    if (pushed->empty()) continue;
    Fields members;
    for (auto& d : *pushed) members.emplace(std::move(d), "");
    sink(LoadRecord{Kind::ota_pushed, id, {}, std::move(members)});
  }
  return true;
}

void SnapshotBuilder::reset() {
  snap_ = Snapshot{};
  snap_.registry = std::make_unique<Registry>();
  bad_products_.clear();
  bad_tasks_.clear();
}

void SnapshotBuilder::add(LoadRecord r) {
  using Kind = LoadRecord::Kind;
  std::string err;
  switch (r.kind) {
    case Kind::begin:
      reset();
      if (auto n = r.fields.find("devices"); n != r.fields.end()) snap_.registry->reserve_devices(static_cast<size_t>(std::max<int64_t>(0, as_number(n->second))));
      break;
    case Kind::end:  // the caller takes the snapshot with finish()
      break;
    case Kind::product:
      if (auto p = product_from_fields(r.id, r.fields, &err)) {
        snap_.registry->put_product(std::move(*p));
      } else {
        snap_.problems.push_back(err);
        bad_products_.insert(r.id);
      }
      break;
    case Kind::device:
      if (bad_products_.count(r.id)) break;
      if (auto d = device_from_fields(r.id, r.member, r.fields, &err)) {
        if (device_hook_) device_hook_(*d);
        snap_.registry->put_device(std::move(*d));
      } else {
        snap_.problems.push_back(err);
      }
      break;
    case Kind::account:
      if (auto a = account_from_fields(r.id, r.fields, &err)) snap_.registry->put_account(std::move(*a));
      else snap_.problems.push_back(err);
      break;
    case Kind::ota_task:
      if (auto t = ota_task_from_fields(r.id, r.fields, &err)) {
        snap_.ota.tasks.push_back(std::move(*t));
      } else {
        snap_.problems.push_back(err);
        bad_tasks_.insert(r.id);
      }
      break;
    case Kind::ota_progress:
      if (bad_tasks_.count(r.id)) break;
      for (const auto& [device, json] : r.fields)
        if (auto p = ota_progress_from_json(json)) snap_.ota.progress[r.id][device] = std::move(*p);
      break;
    case Kind::ota_pushed:
      if (bad_tasks_.count(r.id)) break;
      for (auto& [device, unused] : r.fields) snap_.ota.pushed[r.id].insert(device);
      break;
  }
}

Snapshot SnapshotBuilder::finish() {
  Snapshot out = std::move(snap_);
  reset();
  return out;
}

std::optional<std::vector<EntityUpdate>> RedisStore::read_changes(std::string& after, std::string& commands_after,
                                                                  int block_ms, std::vector<Command>& commands) {
  if (!ctx_) return std::nullopt;
  redisSetTimeout(ctx_, to_timeval(block_ms + config_.redis_timeout_ms));
  Reply r = command({"XREAD", "COUNT", "1000", "BLOCK", std::to_string(block_ms), "STREAMS", key("changes"),
                     key("commands"), after, commands_after});
  if (ctx_) redisSetTimeout(ctx_, to_timeval(config_.redis_timeout_ms));
  if (!r || r->type == REDIS_REPLY_ERROR) {
    if (r) fail("redis XREAD: " + std::string(r->str, r->len));
    return std::nullopt;
  }
  std::vector<EntityUpdate> updates;
  if (r->type != REDIS_REPLY_ARRAY) return updates;  // timeout: nil
  std::set<std::pair<int, std::string>> seen;  // one reload per entity per batch
  for (size_t s = 0; s < r->elements; ++s) {
    const redisReply* stream = r->element[s];
    if (stream->type != REDIS_REPLY_ARRAY || stream->elements < 2 || stream->element[0]->type != REDIS_REPLY_STRING)
      continue;
    bool is_commands = std::string(stream->element[0]->str, stream->element[0]->len) == key("commands");
    const redisReply* entries = stream->element[1];
    for (size_t i = 0; i < entries->elements; ++i) {
      const redisReply* e = entries->element[i];
      if (e->type != REDIS_REPLY_ARRAY || e->elements < 2) continue;
      (is_commands ? commands_after : after).assign(e->element[0]->str, e->element[0]->len);
      // This broker's own announcements (logins, logouts, OTA progress) were applied when they happened: skipped
      // here, before their fields (a login storm's batch has a thousand) are copied out.
      if (is_commands && own_announcement(e->element[1])) continue;
      Fields f = fields_from_array(e->element[1]);
      if (is_commands) {
        commands.push_back(Command{std::move(f)});
        continue;
      }
      EntityUpdate u;
      const std::string& kind = f["kind"];
      u.id = f["id"];
      if (kind == "product") u.kind = EntityUpdate::Kind::product;
      else if (kind == "device") u.kind = EntityUpdate::Kind::device;
      else if (kind == "account") u.kind = EntityUpdate::Kind::account;
      else if (kind == "task") u.kind = EntityUpdate::Kind::task;
      else continue;
      if (u.id.empty() || !seen.emplace(static_cast<int>(u.kind), u.id).second) continue;
      updates.push_back(std::move(u));
    }
  }
  for (auto& u : updates) {
    const char* ns = u.kind == EntityUpdate::Kind::product ? "product:"
                     : u.kind == EntityUpdate::Kind::device ? "device:"
                     : u.kind == EntityUpdate::Kind::account ? "account:"
                                                              : "ota:task:";
    bool ok = false;
    u.fields = hgetall(key(ns + u.id), ok);
    if (!ok) return std::nullopt;
  }
  return updates;
}

bool RedisStore::own_announcement(const redisReply* fields) const {
  if (config_.broker_id.empty() || !fields || fields->type != REDIS_REPLY_ARRAY) return false;
  std::string_view kind, broker;
  for (size_t i = 0; i + 1 < fields->elements; i += 2) {
    const redisReply* k = fields->element[i];
    const redisReply* v = fields->element[i + 1];
    if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) continue;
    const std::string_view name(k->str, k->len);
    if (name == "kind") kind = std::string_view(v->str, v->len);
    else if (name == "broker") broker = std::string_view(v->str, v->len);
  }
  return broker == config_.broker_id && (kind == "fleet" || kind == "ota_progress");
}

StoreResult RedisStore::run(const StoreJob& job) {
  StoreResult res;
  res.token = job.token;
  std::string dkey = key("device:" + job.product + ":" + job.device);
  auto get = [&](const char* f) {
    auto it = job.fields.find(f);
    return it == job.fields.end() ? std::string() : it->second;
  };
  auto with_fields = [&](std::vector<std::string> argv) {
    for (const auto& [f, v] : job.fields) {
      argv.push_back(f);
      argv.push_back(v);
    }
    return argv;
  };
  // Writes whose only answer is done / not done.
  std::vector<std::string> write;
  switch (job.type) {
    case StoreJob::Type::touch_device:
      return touch_many({job});
    case StoreJob::Type::ota_version:
      write = with_fields({"HSET", key("ota:version:" + job.product + ":" + job.device)});
      break;
    case StoreJob::Type::ota_progress:
      write = {"EVAL", kProgressScript, "5", key("ota:task:" + get("task")), key("ota:progress:" + get("task")),
               key("ota:logs"), key("ota:log_seq"), key("commands"), job.device, get("progress"), get("log_status"),
               get("count_success"), job.product, get("task"), get("execute_time"), get("broker")};
      break;
    case StoreJob::Type::emu_result:
      write = with_fields({"EVAL", kEmuResultScript, "1", key("emu:result:" + job.product + ":" + job.device)});
      break;
    case StoreJob::Type::ota_pushed:
      write = {"SADD", key("ota:pushed:" + get("task"))};
      for (const auto& [f, v] : job.fields)
        if (f != "task") write.push_back(v);
      break;
    case StoreJob::Type::retained:
      write = with_fields({"EVAL", kRetainedScript, "2", key("retained:" + job.product + ":" + job.device), dkey});
      break;
    case StoreJob::Type::lierda_issue:
    case StoreJob::Type::krt_issue:
      break;
  }
  Reply r(nullptr, freeReplyObject);
  if (!write.empty()) {
    r = command(write);
    if (!r || r->type == REDIS_REPLY_ERROR) {
      if (r) error_ = std::string(r->str, r->len);
      res.error = "unavailable";
      return res;
    }
    res.ok = true;
    return res;
  }
  r = command(with_fields({"EVAL", kIssueScript, "5", key("product:" + job.product), dkey, key("devices:" + job.product),
                          key("changes"), key("schema"), job.product, job.device, job.create ? "1" : "0", job.origin,
                          job.candidate_secret, std::to_string(job.limit)}));
  if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 1 || r->element[0]->type != REDIS_REPLY_STRING) {
    if (r && r->type == REDIS_REPLY_ERROR) error_ = std::string(r->str, r->len);
    res.error = "unavailable";
    return res;
  }
  std::string status(r->element[0]->str, r->element[0]->len);
  if (status != "ok" || r->elements < 2) {
    res.error = status;
    return res;
  }
  res.ok = true;
  res.device = fields_from_array(r->element[1]);
  return res;
}

}  // namespace iotgate
