-- iotgate admin CLI: helpers shared by the command scripts in this directory.
--
-- scripts/iotgate and iotgate-api load this file and every command script (product_add.lua, ...) as
-- ONE Redis function library (see "function library" at the end), so that these definitions run once,
-- when the library is loaded, not at every call. Each command is one function call, so every command
-- runs atomically. Calling convention of every command:
--   FCALL iotgate_<VERSION>_<command> 0 <key prefix> <command arguments...>
-- which is what an EVAL of lib.lua followed by the command script does too (the tests call some
-- scripts that way):
--   EVAL <lib.lua + command.lua> 0 <key prefix> <command arguments...>
-- A command script defines `local function main()` and ends with `return run(main)`. main returns
-- a JSON string (an object or an array) on success; fail(msg) makes the script return an error reply.
-- Every check is made before the first write: Redis does not roll a script back on error.
--
-- The data model is docs/redis-schema.md. All values in Redis are strings.

-- The call's arguments: an EVAL has them in the global ARGV; in the function library (where that
-- global does not exist) every call sets ARGV and P (register_library).
local ARGV = redis.register_function and {} or ARGV
local P = ARGV[1]

-- ----------------------------------------------------------------------------------- errors
local FAIL_MARK = '\1iotgate\1'

-- A refusal may carry a class, so that a caller can map it without reading the sentence (the HTTP API
-- turns it into a status code). The error reply is then 'CLASS: message'; scripts/iotgate strips the
-- class ('usage: ' makes it exit 2, the others 1). A refusal without a class is a bad request too.
--   usage      a bad argument (HTTP 400)
--   notfound   an unknown product, device or task (404)
--   conflict   a uniqueness rule or the object's state forbids it (409)
--   forbidden  this operator may not do it (403)
local function fail(msg, class)
  error(FAIL_MARK .. (class and (class .. ': ') or '') .. msg, 0)
end

local function check(cond, msg, class)
  if not cond then fail(msg, class) end
end

local function run(main)
  local ok, res = pcall(function()
    check(type(P) == 'string' and P ~= '', 'missing key prefix')
    return main()
  end)
  if ok then return res end
  if type(res) == 'string' then
    if res:sub(1, #FAIL_MARK) == FAIL_MARK then
      return redis.error_reply(res:sub(#FAIL_MARK + 1))
    end
    return redis.error_reply('internal error: ' .. res)
  end
  if type(res) == 'table' and type(res.err) == 'string' then
    return redis.error_reply('internal error: ' .. res.err)
  end
  return redis.error_reply('internal error')
end

-- ----------------------------------------------------------------------------------- keys
local function k_products() return P .. 'products' end
local function k_product(id) return P .. 'product:' .. id end
local function k_devices(id) return P .. 'devices:' .. id end
local function k_device(pid, did) return P .. 'device:' .. pid .. ':' .. did end
-- login / logout times the plugin writes, device -> Unix seconds (see docs/redis-schema.md)
local function k_last_online(pid) return P .. 'last_online:' .. pid end
local function k_last_offline(pid) return P .. 'last_offline:' .. pid end
local function k_emu_uid(did) return P .. 'emu_uid:' .. did end
local function k_accounts() return P .. 'accounts' end
local function k_account(name) return P .. 'account:' .. name end
local function k_changes() return P .. 'changes' end
local function k_schema() return P .. 'schema' end

-- ----------------------------------------------------------------------------------- identifiers
local function is_str(s) return type(s) == 'string' end

local function is_hex(s, n)
  return is_str(s) and #s == n and s:match('^%x+$') ~= nil
end

-- Lierda NodeEui: 4-32 ASCII letters and digits
local function is_eui(s)
  return is_str(s) and #s >= 4 and #s <= 32 and s:match('^[A-Za-z0-9]+$') ~= nil
end

-- KRT ProductID / DeviceID, EMU product key / tenant / device: 1-64 of A-Z a-z 0-9 _ -
local function is_ident(s)
  return is_str(s) and #s >= 1 and #s <= 64 and s:match('^[A-Za-z0-9_%-]+$') ~= nil
end

-- KRT ProductSecret / DeviceSecret, EMU secret: 8-128 printable ASCII characters, no spaces
local function is_secret(s)
  return is_str(s) and #s >= 8 and #s <= 128 and s:match('^[!-~]+$') ~= nil
end

-- account name: 1-64 of A-Z a-z 0-9 _ - . @
local function is_account_name(s)
  return is_str(s) and #s >= 1 and #s <= 64 and s:match('^[A-Za-z0-9_%-%.@]+$') ~= nil
end

-- a product or device id given on the command line (any protocol): the union of the rules above
local function is_ref(s) return is_ident(s) end

-- $7$ITERATIONS$SALT_BASE64$HASH_BASE64 (mosquitto_passwd PBKDF2-SHA512)
local function is_pw_hash(s)
  return is_str(s) and s:match('^%$7%$%d+%$[A-Za-z0-9+/]+=*%$[A-Za-z0-9+/]+=*$') ~= nil
end

local function is_bool(s) return s == '0' or s == '1' end

-- MQTT topic filter: non-empty, no NUL, '#' only as the whole last level, '+' only as a whole level
local function is_filter(f)
  if not is_str(f) or #f == 0 or #f > 65535 or f:find('%z') then return false end
  local levels, start = {}, 1
  while true do
    local i = f:find('/', start, true)
    if not i then
      levels[#levels + 1] = f:sub(start)
      break
    end
    levels[#levels + 1] = f:sub(start, i - 1)
    start = i + 1
  end
  for i, l in ipairs(levels) do
    if l:find('#', 1, true) and (l ~= '#' or i ~= #levels) then return false end
    if l:find('+', 1, true) and l ~= '+' then return false end
  end
  return true
end

-- an ACL rule: "read FILTER", "write FILTER" or "readwrite FILTER" (exactly one space; the filter neither starts nor ends with a space)
local function is_rule(r)
  if not is_str(r) then return false end
  local sp = r:find(' ', 1, true)
  if not sp then return false end
  local access, filter = r:sub(1, sp - 1), r:sub(sp + 1)
  if access ~= 'read' and access ~= 'write' and access ~= 'readwrite' then return false end
  if filter:sub(1, 1) == ' ' or filter:sub(-1) == ' ' then return false end
  return is_filter(filter)
end

-- ----------------------------------------------------------------------------------- JSON
-- cjson (Redis' embedded one) escapes strings correctly but writes '/' as '\/' and cannot order
-- keys; the helpers below build the JSON text, using cjson for the scalars.
local NULL = {}

local function jstr(s)
  -- every '/' in cjson's output is an escaped one ('\/'), so this cannot touch an escaped '\'
  local e = cjson.encode(s)
  if not e:find('\\/', 1, true) then return e end  -- most strings: no pattern scan
  return (e:gsub('\\/', '/'))
end

local function jval(v)
  local t = type(v)
  if t == 'string' then return jstr(v) end
  if v == NULL then return 'null' end
  if t == 'number' then return string.format('%d', v) end
  if t == 'boolean' then return tostring(v) end
  if t == 'table' and v.raw then return v.raw end
  error('cannot encode a ' .. t)
end

-- a key order for jobj made once (list: keys of A-Z a-z 0-9 _, which need no escaping): with each key's
-- JSON text, written once
local function lead_keys(list)
  local json = {}
  for i = 1, #list do json[i] = '"' .. list[i] .. '":' end
  list.json = json
  return list
end

-- a JSON object of table t: the keys of `lead` first (when present), then the others sorted
local function jobj(t, lead)
  local parts, n, seen = {}, 0, {}
  if lead then
    local json = lead.json
    for i = 1, #lead do
      local k = lead[i]
      local v = t[k]
      if v ~= nil then
        n = n + 1
        parts[n] = (json and json[i] or jstr(k) .. ':') .. jval(v)
        seen[k] = true
      end
    end
  end
  local rest, m = {}, 0
  for k in pairs(t) do
    if not seen[k] then
      m = m + 1
      rest[m] = k
    end
  end
  table.sort(rest)
  for i = 1, m do
    local k = rest[i]
    n = n + 1
    parts[n] = jstr(k) .. ':' .. jval(t[k])
  end
  return '{' .. table.concat(parts, ',') .. '}'
end

-- a JSON array of already encoded JSON values ('[]' when empty)
local function jarr(items)
  return '[' .. table.concat(items, ',') .. ']'
end

local function jstr_array(list)
  local items = {}
  for i, s in ipairs(list) do items[i] = jstr(s) end
  return jarr(items)
end

-- ----------------------------------------------------------------------------------- Redis
local function now()
  return tostring(redis.call('TIME')[1])
end

-- a hash as a table, and HGETALL's reply (field, value, ...)
local function hgetall_flat(key)
  local flat = redis.call('HGETALL', key)
  local t = {}
  for i = 1, #flat, 2 do t[flat[i]] = flat[i + 1] end
  return t, flat
end

-- a hash as a table
local function hgetall(key)
  return (hgetall_flat(key))
end

local function hset(key, t)
  local args, keys = {}, {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do
    args[#args + 1] = k
    args[#args + 1] = t[k]
  end
  if #args > 0 then redis.call('HSET', key, unpack(args)) end
end

local function exists(key)
  return redis.call('EXISTS', key) == 1
end

local function sorted_members(key)
  local m = redis.call('SMEMBERS', key)
  table.sort(m)
  return m
end

-- record a change: the schema version and one entry in the changes stream
local function changed(kind, id)
  redis.call('SET', k_schema(), '1', 'NX')
  redis.call('XADD', k_changes(), 'MAXLEN', '~', '10000', '*', 'kind', kind, 'id', id)
end

-- ----------------------------------------------------------------------------------- products
-- Find product `ref` (an id given by the operator). Lierda ids are stored upper-case, so a lower-case
-- Lierda ProductID is accepted too. Returns its id; fails when unknown.
local function find_product(ref)
  check(is_ref(ref), 'invalid product id: 1-64 of A-Z a-z 0-9 _ -')
  if exists(k_product(ref)) then return ref end
  local up = ref:upper()
  if up ~= ref and redis.call('HGET', k_product(up), 'protocol') == 'lierda' then return up end
  fail("unknown product '" .. ref .. "'", 'notfound')
end

-- find_product, and the product's hash: returns id, hash
local function get_product(ref)
  local id = find_product(ref)
  return id, hgetall(k_product(id))
end

local PRODUCT_SECRETS = { product_key = true, product_secret = true }

local function product_json(id, h, opts)
  local t = {}
  for k, v in pairs(h) do
    if opts.secrets or not PRODUCT_SECRETS[k] then t[k] = v end
  end
  t.id = id
  if opts.count then t.device_count = redis.call('SCARD', k_devices(id)) end
  return jobj(t, { 'id', 'protocol' })
end

-- ----------------------------------------------------------------------------------- devices
-- Find device `ref` of product `pid`: returns its id; fails when unknown.
local function find_device(pid, ref)
  check(is_ref(ref), 'invalid device id: 1-64 of A-Z a-z 0-9 _ -')
  check(exists(k_device(pid, ref)), "unknown device '" .. ref .. "' of product '" .. pid .. "'", 'notfound')
  return ref
end

-- find_device, and the device's hash: returns id, hash
local function get_device(pid, ref)
  find_device(pid, ref)
  return ref, hgetall(k_device(pid, ref))
end

local DEVICE_SECRETS = { secret = true, session_key = true }

-- secret_hash is never shown; secret and session_key only with opts.secrets
local function device_json(pid, did, protocol, h, opts)
  local t = {}
  for k, v in pairs(h) do
    if k ~= 'secret_hash' and (opts.secrets or not DEVICE_SECRETS[k]) then t[k] = v end
  end
  t.product, t.device, t.protocol = pid, did, protocol
  -- the later of the times hash and the device hash's own field (data written before the hashes existed)
  for field, key in pairs({ last_online = k_last_online(pid), last_offline = k_last_offline(pid) }) do
    local seen = redis.call('HGET', key, did)
    if seen and (tonumber(seen) or 0) > (tonumber(t[field]) or 0) then t[field] = seen end
  end
  return jobj(t, { 'product', 'device', 'protocol', 'secret' })
end

-- ----------------------------------------------------------------------------------- accounts
local function account_json(name, h)
  local rules = {}
  local ok, decoded = pcall(cjson.decode, h.rules or '[]')
  if ok and type(decoded) == 'table' then
    for _, r in ipairs(decoded) do
      if type(r) == 'string' then rules[#rules + 1] = r end
    end
  end
  return jobj({
    name = name,
    superuser = h.superuser or '0',
    rules = { raw = jstr_array(rules) },
    created_at = h.created_at,
  }, { 'name', 'superuser', 'rules', 'created_at' })
end

-- ----------------------------------------------------------------------------------- OTA
-- Upgrade tasks (seed 002): keys and helpers shared by the task_*, emu_* and ask-firmware scripts.
-- A message that starts with 'usage: ' is a bad argument (the CLI exits 2 for it, 1 otherwise).
local function bad_arg(msg) fail(msg, 'usage') end

local function k_ota(rest) return P .. 'ota:' .. rest end
local function k_task(id) return k_ota('task:' .. id) end
local function k_unique(pid, ttype, identify, from)
  return k_ota('unique:' .. pid .. ':' .. ttype .. ':' .. identify .. ':' .. from)
end
local function k_version(pid, did) return k_ota('version:' .. pid .. ':' .. did) end
local function k_commands() return P .. 'commands' end

-- A product's indexes of its task names (docs/redis-schema.md): the hash P ota:task_names:{PRODUCT} (task id ->
-- name) and the sorted set P ota:task_names_ci:{PRODUCT} (every score 0) of name_entry(id, name), which lists the
-- tasks whose name starts with a text, ASCII case-insensitively, in one ZRANGEBYLEX.
local function k_task_names(pid) return k_ota('task_names:' .. pid) end
local function k_task_names_ci(pid) return k_ota('task_names_ci:' .. pid) end
local function name_entry(id, name) return name:lower() .. '\0' .. name .. '\0' .. id end

-- an entry of P ota:task_names_ci -> id, name (nil for anything else)
local function parse_name_entry(e)
  -- a name without NUL: the first NUL ends the lower-cased name, as long as the name (lower-casing keeps it)
  local n = (e:find('\0', 1, true) or 0) - 1
  local id = n >= 0 and e:byte(2 * n + 2) == 0 and e:sub(2 * n + 3)
  if not (id and id:find('^%d+$')) then  -- (a name with a NUL, only by hand: the id follows the last NUL)
    local at = e:match('^.*%z()%d+$')
    if not at then return nil end
    n, id = (at - 3) / 2, e:sub(at)
  end
  return id, e:sub(n + 2, 2 * n + 1)
end

-- the ZRANGEBYLEX bound just after every text that starts with p (exclusive), '+' when there is none
local function lex_after(p)
  local i = #p
  while i > 0 and p:byte(i) == 255 do i = i - 1 end
  if i == 0 then return '+' end
  return '(' .. p:sub(1, i - 1) .. string.char(p:byte(i) + 1)
end

-- Sets task id's name in the product's indexes (name nil: removes the task from them). A sorted set that
-- misses tasks the hash has (made before it existed) is first made again from the hash.
local function index_task_name(pid, id, name)
  local names, ci = k_task_names(pid), k_task_names_ci(pid)
  if redis.call('ZCARD', ci) ~= redis.call('HLEN', names) then
    redis.call('DEL', ci)
    local flat, args = redis.call('HGETALL', names), {}
    for i = 1, #flat, 2 do
      args[#args + 1] = '0'
      args[#args + 1] = name_entry(flat[i], flat[i + 1])
      if #args >= 1000 or i + 2 > #flat then
        redis.call('ZADD', ci, unpack(args))
        args = {}
      end
    end
  end
  local old = redis.call('HGET', names, id)
  if old then redis.call('ZREM', ci, name_entry(id, old)) end
  if name then
    redis.call('HSET', names, id, name)
    redis.call('ZADD', ci, '0', name_entry(id, name))
  else
    redis.call('HDEL', names, id)
  end
end

-- Removes a task (hash `h`) and everything keyed by it; the OTA logs are history and stay.
local function remove_task(id, h)
  local ukey = k_unique(h.product_id, h.type, h.identify, h.from_version)
  if redis.call('GET', ukey) == id then redis.call('DEL', ukey) end
  redis.call('DEL', k_task(id), k_ota('progress:' .. id), k_ota('oplog:' .. id), k_ota('pushed:' .. id))
  redis.call('SREM', k_ota('tasks'), id)
  redis.call('ZREM', k_ota('tasks:' .. h.product_id), id)
  index_task_name(h.product_id, id, nil)
  changed('task', id)
end

-- Removes what the plugin stored about a device: its login / logout times, reported versions and EMU results.
local function remove_device_state(pid, did)
  -- The retained messages brokers hold on the device's topics (the plugin records them): every broker clears its
  -- own, so that a device created again with this id is not served the old one's.
  local retained = P .. 'retained:' .. pid .. ':' .. did
  local topics = redis.call('SMEMBERS', retained)
  if #topics > 0 then
    redis.call('XADD', k_commands(), 'MAXLEN', '~', '10000', '*', 'kind', 'clear_retained', 'topics', cjson.encode(topics))
    redis.call('DEL', retained)
  end
  redis.call('HDEL', k_last_online(pid), did)
  redis.call('HDEL', k_last_offline(pid), did)
  redis.call('DEL', k_version(pid, did), P .. 'emu:result:' .. pid .. ':' .. did)
end

local TASK_TYPES = { wifi = true, mcu = true, ['sub-device'] = true }
local PROGRESS_STATES = { 'pending', 'notified', 'acked', 'succeeded', 'failed', 'timed_out' }

-- a task id: a positive decimal integer
local function is_task_id(s) return is_str(s) and #s <= 15 and s:match('^[1-9]%d*$') ~= nil end
-- a non-negative decimal integer without leading zeros, at most `digits` digits
local function is_uint(s, digits)
  return is_str(s) and #s <= (digits or 15) and (s == '0' or s:match('^[1-9]%d*$') ~= nil)
end
-- a version: 1-64 printable ASCII characters, no spaces (compared as an exact string)
local function is_version(s) return is_str(s) and #s >= 1 and #s <= 64 and s:match('^[!-~]+$') ~= nil end
-- identify (the module): 1-64 of A-Z a-z 0-9 _ . - ('updated_at' is a field of the version hash)
local function is_identify(s)
  return is_str(s) and #s >= 1 and #s <= 64 and s:match('^[A-Za-z0-9_%.%-]+$') ~= nil and s ~= 'updated_at'
end
local function is_url(s)
  return is_str(s) and #s <= 2048 and s:match('^[Hh][Tt][Tt][Pp][Ss]?://[!-~]+$') ~= nil
end
-- an operator / reviewer name: 1-64 of A-Z a-z 0-9 _ - . @
local function is_member(s) return is_account_name(s) end

-- --type: wifi, mcu, sub-device, or the seed's numbers 1, 2, 3; nil when invalid
local TASK_TYPE_ALIAS = { ['1'] = 'wifi', ['2'] = 'mcu', ['3'] = 'sub-device' }
local function task_type_arg(s)
  s = TASK_TYPE_ALIAS[s] or s
  return TASK_TYPES[s] and s or nil
end

-- --identify of a task of type `ttype`: required for mcu / sub-device; absent (or 0, the seed's
-- value for wifi) means 'default' for wifi. Fails on a bad value.
local function identify_arg(ttype, s)
  if s == nil or s == '' then
    if ttype ~= 'wifi' then bad_arg('--identify is required for type ' .. ttype .. ' (the MCU / sub-device module)') end
    return 'default'
  end
  if ttype == 'wifi' and s == '0' then return 'default' end
  if not is_identify(s) then bad_arg('invalid --identify: 1-64 of A-Z a-z 0-9 _ . - (not updated_at)') end
  return s
end

-- number of characters of valid UTF-8 text without control characters; nil when it is not such text
local function text_len(s)
  if not is_str(s) then return nil end
  local n, i, len = 0, 1, #s
  while i <= len do
    local c = s:byte(i)
    local extra, lo, hi = 0, 0x80, 0xBF
    if c < 0x80 then
      if c < 0x20 or c == 0x7F then return nil end
    elseif c >= 0xC2 and c <= 0xDF then extra = 1
    elseif c >= 0xE0 and c <= 0xEF then
      extra = 2
      if c == 0xE0 then lo = 0xA0 elseif c == 0xED then hi = 0x9F end
    elseif c >= 0xF0 and c <= 0xF4 then
      extra = 3
      if c == 0xF0 then lo = 0x90 elseif c == 0xF4 then hi = 0x8F end
    else
      return nil
    end
    for j = i + 1, i + extra do
      local b = s:byte(j)
      if not b or b < lo or b > hi then return nil end
      lo, hi = 0x80, 0xBF
    end
    i = i + extra + 1
    n = n + 1
  end
  return n
end

-- comma-separated ids -> list (order kept, duplicates dropped); fails on an empty or invalid id
local function split_ids(s, what)
  local list, seen = {}, {}
  if not is_str(s) or s == '' then return list end
  for id in (s .. ','):gmatch('([^,]*),') do
    check(is_ident(id), 'invalid ' .. what .. " '" .. id .. "': 1-64 of A-Z a-z 0-9 _ -")
    if not seen[id] then
      seen[id] = true
      list[#list + 1] = id
    end
  end
  return list
end

-- redis TIME -> seconds, microseconds
local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]), tonumber(t[2])
end

-- Unix seconds (+ microseconds) -> yyyy-MM-dd'T'HH:mm:ss.SS'Z' (UTC, hundredths of a second)
local function iso_time(sec, usec)
  local days = math.floor(sec / 86400)
  local rem = sec - days * 86400
  -- proleptic Gregorian calendar from a day count (the 400-year era method)
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local day = doy - math.floor((153 * mp + 2) / 5) + 1
  local month = mp < 10 and mp + 3 or mp - 9
  local year = yoe + era * 400 + (month <= 2 and 1 or 0)
  return string.format('%04d-%02d-%02dT%02d:%02d:%02d.%02dZ', year, month, day,
    math.floor(rem / 3600), math.floor(rem % 3600 / 60), rem % 60, math.floor((usec or 0) / 10000))
end

-- FNV-1a 32-bit of a string (the gray-release hash; exact in Lua's doubles)
local function fnv1a(s)
  local h = 2166136261
  for i = 1, #s do
    h = bit.bxor(h, s:byte(i)) % 4294967296
    h = ((h % 256) * 16777216 + h * 403) % 4294967296
  end
  return h
end

-- a JSON array of strings stored in a hash field -> list (empty on anything else)
local function decode_list(s)
  local ok, v = pcall(cjson.decode, s or '[]')
  local list = {}
  if ok and type(v) == 'table' then
    for _, x in ipairs(v) do
      if type(x) == 'string' then list[#list + 1] = x end
    end
  end
  return list
end

-- the task `ref`; returns id, hash; fails when unknown
local function get_task(ref)
  check(is_task_id(ref), 'invalid task id: a positive integer')
  local h = hgetall(k_task(ref))
  check(h.id ~= nil, "unknown task '" .. ref .. "'", 'notfound')
  return ref, h
end

-- field/value pairs ARGV[first..], each named in `fields` (`what` names them in the refusal) -> table
local function arg_fields(first, fields, what)
  check((#ARGV - first) % 2 == 1, 'field without a value')
  local f = {}
  for i = first, #ARGV, 2 do
    if not fields[ARGV[i]] then bad_arg('unknown ' .. what .. ' ' .. ARGV[i]) end
    f[ARGV[i]] = ARGV[i + 1]
  end
  return f
end

-- A task request: ARGV[2] the operator, ARGV[3] the task, ARGV[4..] field/value pairs named in `fields`
-- (`what` names them in the refusal). Returns operator, task id, task hash, fields.
local function task_request(fields, what)
  local operator = ARGV[2]
  check(is_member(operator), 'invalid operator: 1-64 of A-Z a-z 0-9 _ - . @')
  local id, h = get_task(ARGV[3])
  return operator, id, h, arg_fields(4, fields, what)
end

-- When a request names a product besides the task (the HTTP API's do), the task must be one of its
-- tasks; an empty `ref` names none.
local function check_task_product(id, h, ref)
  if ref == nil or ref == '' then return end
  local pid = find_product(ref)
  check(h.product_id == pid, "task '" .. id .. "' is not a task of product '" .. ref .. "'", 'notfound')
end

-- device ids in the task's scope: the listed devices that are still devices of the product
-- (category 1), or every device of the product (category 0); sorted
local function task_scope(h)
  local out = {}
  if h.scope_category == '1' then
    for _, did in ipairs(decode_list(h.device_list)) do
      if redis.call('SISMEMBER', k_devices(h.product_id), did) == 1 then out[#out + 1] = did end
    end
    table.sort(out)
  else
    out = sorted_members(k_devices(h.product_id))
  end
  return out
end

-- device id -> progress state, for every device with a progress entry
local function task_states(id)
  local states = {}
  for did, js in pairs(hgetall(k_ota('progress:' .. id))) do
    local ok, v = pcall(cjson.decode, js)
    states[did] = (ok and type(v) == 'table' and type(v.state) == 'string') and v.state or 'unknown'
  end
  return states
end

-- devices in scope whose version for the task's module is from_version and that have not succeeded.
-- `memo` (optional): a table kept across the tasks of one call, so that a page of tasks reads a product's
-- devices and each device's version of a module once.
local function task_surplus(id, h, states, memo)
  states = states or task_states(id)
  memo = memo or {}
  local pid = h.product_id
  local scope
  if h.scope_category == '1' then
    scope = task_scope(h)
  else  -- every device of the product (counted: their order does not matter)
    memo.devices = memo.devices or {}
    scope = memo.devices[pid] or redis.call('SMEMBERS', k_devices(pid))
    memo.devices[pid] = scope
  end
  memo.versions = memo.versions or {}
  local vkey = pid .. '\0' .. tostring(h.identify)
  local versions = memo.versions[vkey] or {}
  memo.versions[vkey] = versions
  local n = 0
  for _, did in ipairs(scope) do
    if states[did] ~= 'succeeded' then
      local v = versions[did]
      if v == nil then
        v = redis.call('HGET', k_version(pid, did), h.identify)
        versions[did] = v
      end
      if v == h.from_version then n = n + 1 end
    end
  end
  return n
end

local TASK_LEAD = lead_keys({ 'id', 'product_id', 'name', 'description', 'from_version', 'from_version_url',
  'from_version_md5', 'from_version_size', 'target_version', 'target_version_url', 'target_version_md5',
  'target_version_size', 'upgrade_count', 'surplus_count', 'status', 'type', 'identify', 'task_type',
  'scope', 'tag_type', 'audit_member_id', 'create_time', 'approved', 'created_at' })

-- the task as JSON: stored fields as strings, scope as {"category":..,"device_list":[..]}, plus `extra`
local function task_json(h, extra)
  local t = {}
  for k, v in pairs(h) do
    if k ~= 'scope_category' and k ~= 'device_list' then t[k] = v end
  end
  t.scope = { raw = jobj({ category = h.scope_category or '0',
    device_list = { raw = jstr_array(decode_list(h.device_list)) } }, { 'category', 'device_list' }) }
  for k, v in pairs(extra or {}) do t[k] = v end
  return jobj(t, TASK_LEAD)
end

-- task_json(h) of the task hash h that HGETALL returned as `flat`. Task check, the devices' hot path, renders
-- the same few running tasks over and over, and rendering costs more than reading them: the function library
-- keeps the texts it rendered, keyed by the hash's whole content (`flat` encoded as a JSON array, which tells
-- any two contents apart). A text is a function of that content alone, so an entry cannot be stale: a task
-- that changed in any way (a field written by a script, by the plugin or by hand) has another key. The memo
-- lives as long as the loaded library (in an EVAL, one call) and holds at most TASK_MEMO_MAX texts.
local TASK_MEMO_MAX = 256
local task_memo, task_memo_n = {}, 0
local function task_json_memo(flat, h)
  local key = cjson.encode(flat)
  local js = task_memo[key]
  if not js then
    js = task_json(h)
    if task_memo_n >= TASK_MEMO_MAX then task_memo, task_memo_n = {}, 0 end
    task_memo[key] = js
    task_memo_n = task_memo_n + 1
  end
  return js
end

-- append an entry to the task's operation log
local function oplog(id, operator, action, detail, sec, usec)
  check(is_member(operator), 'invalid operator: 1-64 of A-Z a-z 0-9 _ - . @')
  redis.call('RPUSH', k_ota('oplog:' .. id), jobj({ time = iso_time(sec, usec), operator = operator,
    action = action, detail = detail }, { 'time', 'operator', 'action', 'detail' }))
end

-- append an OTA log entry (status 1 sent, 2 done); returns its JSON
local function ota_log(pid, task, did, status, mac, sn, sec, usec)
  local id = redis.call('INCR', k_ota('log_seq'))
  local js = jobj({ id = id, product_id = pid, task_id = task, device_id = did, device_mac = mac or '',
    device_sn = sn or '', status = status, execute_time = iso_time(sec, usec) },
    { 'id', 'product_id', 'task_id', 'device_id', 'device_mac', 'device_sn', 'status', 'execute_time' })
  redis.call('RPUSH', k_ota('logs'), js)
  redis.call('LTRIM', k_ota('logs'), -100000, -1)
  return js
end

-- a request for the plugin; returns the stream entry id
local function command(...)
  return redis.call('XADD', k_commands(), 'MAXLEN', '~', '10000', '*', ...)
end

-- a decoded JSON scalar as a string (numbers as their decimal form); nil for anything else
local function scalar(v)
  local t = type(v)
  if t == 'string' then return v end
  if t == 'number' then
    if v == math.floor(v) and math.abs(v) < 1e15 then return string.format('%d', v) end
    return string.format('%.14g', v)
  end
  return nil
end

-- the number a decimal number's text stands for (-12, 3.5, 07); nil for any other text
local function decimal(s)
  return s:match('^%-?%d+%.?%d*$') and tonumber(s) or nil
end

-- compare two strings: as numbers when both are decimal numbers, else byte-wise; -1, 0 or 1
local function compare(a, b)
  local na = decimal(a)
  local nb = decimal(b)
  if na and nb then
    if na < nb then return -1 elseif na > nb then return 1 else return 0 end
  end
  if a < b then return -1 elseif a > b then return 1 else return 0 end
end

-- a Lua pattern of the lower-case text s that matches it ASCII case-insensitively
local function ci_pattern(s)
  return (s:gsub('.', function(c)
    if c:find('^%l') then return '[' .. c .. c:upper() .. ']' end
    if c == '\0' then return '%z' end
    if c:find('^%p') then return '%' .. c end
    return c
  end))
end

-- SQL-like match, ASCII case-insensitive: '%' matches any run of characters; a pattern without '%'
-- matches anywhere (a substring). like_matcher(pat) parses the pattern once and returns a function of
-- the value (for scans over many values). Each piece between the '%'s is a Lua pattern of single
-- characters (ci_pattern), found where the value would be compared lower-cased: a value is never copied.
local function like_matcher(pat)
  pat = pat:lower()
  if not pat:find('%', 1, true) then
    local p = ci_pattern(pat)
    return function(value) return value:find(p) ~= nil end
  end
  local parts = {}
  for part in (pat .. '%'):gmatch('([^%%]*)%%') do parts[#parts + 1] = part end
  local first, last = parts[1], parts[#parts]
  local first_p, last_p, middle = '^' .. ci_pattern(first), '^' .. ci_pattern(last), {}
  for i = 2, #parts - 1 do
    if parts[i] ~= '' then middle[#middle + 1] = ci_pattern(parts[i]) end
  end
  if #parts == 2 and last == '' then  -- 'prefix%', the common case: only the prefix is compared
    return function(value) return value:find(first_p) ~= nil end
  end
  return function(value)
    if not value:find(first_p) then return false end
    local pos = #first + 1
    for i = 1, #middle do
      local _, e = value:find(middle[i], pos)
      if not e then return false end
      pos = e + 1
    end
    local from = #value - #last + 1
    return from >= pos and value:find(last_p, from) ~= nil
  end
end

local function like(value, pat) return like_matcher(pat)(value) end

-- a sort key for compare_keys: numbers compare as numbers when both are decimal numbers (as compare)
local function sort_key(s)
  return { s = s, n = decimal(s) }
end

local function compare_keys(a, b)
  if a.n and b.n then
    if a.n < b.n then return -1 elseif a.n > b.n then return 1 else return 0 end
  end
  if a.s < b.s then return -1 elseif a.s > b.s then return 1 else return 0 end
end

-- decode a JSON object given by the operator (--query / --order); {} when empty
local function json_arg(s, what)
  if not is_str(s) or s == '' then return {} end
  local ok, v = pcall(cjson.decode, s)
  if not ok or type(v) ~= 'table' or (next(v) ~= nil and #v > 0) then
    bad_arg('invalid ' .. what .. ': expected a JSON object')
  end
  return v
end

-- --order {"field":"asc|desc",...} -> list of {field, descending}, in the order written
local function order_arg(s, allowed)
  local v = json_arg(s, '--order')
  local keys = {}
  for k, dir in pairs(v) do
    if type(k) ~= 'string' or not allowed[k] then bad_arg('--order: unknown field ' .. tostring(k)) end
    if dir ~= 'asc' and dir ~= 'desc' then bad_arg('--order: ' .. k .. ' must be "asc" or "desc"') end
    local pos = s:find('"' .. k .. '"%s*:')
    keys[#keys + 1] = { field = k, desc = dir == 'desc', pos = pos or 0 }
  end
  table.sort(keys, function(a, b) return a.pos < b.pos end)
  return keys
end

-- --offset / --limit
local function paging(offset, limit)
  offset = (offset == nil or offset == '') and '0' or offset
  limit = (limit == nil or limit == '') and '10' or limit
  if not is_uint(offset, 9) then bad_arg('invalid --offset: a non-negative integer') end
  if not is_uint(limit, 4) or tonumber(limit) < 1 or tonumber(limit) > 1000 then
    bad_arg('invalid --limit: 1-1000')
  end
  return tonumber(offset), tonumber(limit)
end

-- the EMU product named by --product-key (namespace wudun) or --tenant (user); returns its hash
local function get_emu_product(ns, pref)
  check(ns == 'wudun' or ns == 'user', 'invalid EMU namespace: wudun or user')
  check(is_ident(pref), 'invalid EMU ' .. (ns == 'wudun' and 'product key' or 'tenant') .. ': 1-64 of A-Z a-z 0-9 _ -')
  check(exists(k_product(pref)), "unknown product '" .. pref .. "'", 'notfound')
  local product = hgetall(k_product(pref))
  check(product.protocol == 'emu', "product '" .. pref .. "' is a " .. tostring(product.protocol) .. ' product, not emu')
  if product.namespace ~= ns then
    fail("EMU product '" .. pref .. "' has namespace " .. tostring(product.namespace) .. ' (use ' ..
      (product.namespace == 'user' and '--tenant' or '--product-key') .. ')')
  end
  return product
end

-- ----------------------------------------------------------------------------------- function library
-- The library's text, built alike by scripts/iotgate (lua_library) and iotgate-api (api/lua_scripts.cpp):
--   "#!lua name=iotgate\n" .. <lib.lua> .. "\n"
--   then for every other NAME.lua of this directory (NAME of A-Z a-z 0-9 _), in byte order of the names:
--   "command_script('NAME', function()\n" .. <NAME.lua> .. "\nend)\n"
--   then "register_library('VERSION')\n"
-- (each file as it is). VERSION is the first 12 hex digits of the SHA-1 of the text before that last line.
-- Each command is the function iotgate_VERSION_NAME: a caller that finds no such function (a fresh or
-- flushed Redis, another version of the scripts loaded) loads its own text with FUNCTION LOAD REPLACE and
-- calls again.
-- (While the library loads, Redis offers no global functions but its own API: no pairs, ipairs, type...)
local COMMANDS = {}

local function command_script(name, script)
  COMMANDS[#COMMANDS + 1] = { name = name, script = script }
end

-- the commands that only read: callable with FCALL_RO, on a replica, and when Redis is out of memory
local READ_ONLY = {
  account_list = true, account_show = true, creds = true, device_list = true, device_page = true,
  device_show = true, emu_show = true, product_list = true, product_page = true, product_show = true,
  task_check = true, task_get = true, task_list = true, task_log_query = true, task_oplog = true,
  task_versions = true, token_list = true,
}

local function register_library(version)
  for i = 1, #COMMANDS do
    local script = COMMANDS[i].script
    redis.register_function({
      function_name = 'iotgate_' .. version .. '_' .. COMMANDS[i].name,
      callback = function(_, args)
        ARGV, P = args, args[1]
        return script()
      end,
      flags = READ_ONLY[COMMANDS[i].name] and { 'no-writes' } or {},
    })
  end
end

-- ----------------------------------------------------------------------------------- command
