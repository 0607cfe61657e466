-- iotgate admin CLI: helpers shared by the command scripts in this directory.
--
-- scripts/iotgate sends this file followed by ONE command script (product_add.lua, ...) as the body
-- of a single EVAL, so every command runs atomically. Calling convention of every script:
--   EVAL <lib.lua + command.lua> 0 <key prefix> <command arguments...>
-- A command script defines `local function main()` and ends with `return run(main)`. main returns
-- a JSON string (an object or an array) on success; fail(msg) makes the script return an error reply.
-- Every check is made before the first write: Redis does not roll a script back on error.
--
-- The data model is docs/redis-schema.md. All values in Redis are strings.

local P = ARGV[1]

-- ----------------------------------------------------------------------------------- errors
local FAIL_MARK = '\1iotgate\1'

local function fail(msg)
  error(FAIL_MARK .. msg, 0)
end

local function check(cond, msg)
  if not cond then fail(msg) end
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
  return (cjson.encode(s):gsub('\\/', '/'))
end

local function jval(v)
  if v == NULL then return 'null' end
  local t = type(v)
  if t == 'string' then return jstr(v) end
  if t == 'number' then return string.format('%d', v) end
  if t == 'boolean' then return tostring(v) end
  if t == 'table' and v.raw then return v.raw end
  error('cannot encode a ' .. t)
end

-- a JSON object of table t: the keys of `lead` first (when present), then the others sorted
local function jobj(t, lead)
  local parts, seen = {}, {}
  for _, k in ipairs(lead or {}) do
    if t[k] ~= nil then
      parts[#parts + 1] = jstr(k) .. ':' .. jval(t[k])
      seen[k] = true
    end
  end
  local rest = {}
  for k in pairs(t) do
    if not seen[k] then rest[#rest + 1] = k end
  end
  table.sort(rest)
  for _, k in ipairs(rest) do
    parts[#parts + 1] = jstr(k) .. ':' .. jval(t[k])
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

local function hgetall(key)
  local flat = redis.call('HGETALL', key)
  local t = {}
  for i = 1, #flat, 2 do t[flat[i]] = flat[i + 1] end
  return t
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
-- Lierda ProductID is accepted too. Returns id, hash; fails when unknown.
local function get_product(ref)
  check(is_ref(ref), 'invalid product id: 1-64 of A-Z a-z 0-9 _ -')
  if exists(k_product(ref)) then return ref, hgetall(k_product(ref)) end
  local up = ref:upper()
  if up ~= ref and exists(k_product(up)) then
    local h = hgetall(k_product(up))
    if h.protocol == 'lierda' then return up, h end
  end
  fail("unknown product '" .. ref .. "'")
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
local function get_device(pid, ref)
  check(is_ref(ref), 'invalid device id: 1-64 of A-Z a-z 0-9 _ -')
  local key = k_device(pid, ref)
  check(exists(key), "unknown device '" .. ref .. "' of product '" .. pid .. "'")
  return ref, hgetall(key)
end

local DEVICE_SECRETS = { secret = true, session_key = true }

-- secret_hash is never shown; secret and session_key only with opts.secrets
local function device_json(pid, did, protocol, h, opts)
  local t = {}
  for k, v in pairs(h) do
    if k ~= 'secret_hash' and (opts.secrets or not DEVICE_SECRETS[k]) then t[k] = v end
  end
  t.product, t.device, t.protocol = pid, did, protocol
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

-- ----------------------------------------------------------------------------------- command
