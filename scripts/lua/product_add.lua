-- product add: ARGV[2] protocol (lierda|krt|emu), ARGV[3] product id, then field/value pairs:
--   lierda: openid, product_key, auth_type, encrypted, limit
--   krt:    product_secret, dynamic_register, auto_create, limit
--   emu:    namespace (wudun|user)
-- Returns the new product, secrets included (they are shown once, here).
local FIELDS = {
  lierda = { openid = true, product_key = true, auth_type = true, encrypted = true, limit = true },
  krt = { product_secret = true, dynamic_register = true, auto_create = true, limit = true },
  emu = { namespace = true },
}

-- Devices that devices may create (KRT auto-creation, Lierda type 0 AUTH requests); 1000 when not given.
local function valid_limit(limit)
  limit = limit or '1000'
  check(limit:match('^[1-9]%d*$') ~= nil and #limit <= 9, 'invalid limit: a positive integer (at most 9 digits)')
  return limit
end

-- Lierda topics are /sys/{OpenID}/{ProductID}/{NodeEui}/..., KRT topics /sys/{ProductID}/{DeviceID}/thing/...: a
-- KRT ProductID equal to a Lierda OpenID would share topics with that OpenID's devices (NodeEui "thing").
local function topic_clash(protocol, id, openid)
  for _, pid in ipairs(redis.call('SMEMBERS', k_products())) do
    local h = redis.call('HMGET', k_product(pid), 'protocol', 'openid')
    if protocol == 'krt' and h[1] == 'lierda' and h[2] == id then
      return "KRT ProductID '" .. id .. "' is the OpenID of Lierda product " .. pid .. ': their topics under /sys/ would overlap'
    end
    if protocol == 'lierda' and h[1] == 'krt' and pid == openid then
      return "OpenID '" .. openid .. "' is the ProductID of KRT product " .. pid .. ': their topics under /sys/ would overlap'
    end
  end
end

local function main()
  local protocol, id = ARGV[2], ARGV[3]
  check(FIELDS[protocol] ~= nil, 'unknown protocol (lierda, krt or emu)')
  check(#ARGV % 2 == 1, 'field without a value')
  local f = {}
  for i = 4, #ARGV, 2 do
    check(FIELDS[protocol][ARGV[i]], 'field ' .. ARGV[i] .. ' does not belong to a ' .. protocol .. ' product')
    f[ARGV[i]] = ARGV[i + 1]
  end

  local h = {}
  if protocol == 'lierda' then
    check(is_hex(id, 8), 'invalid Lierda ProductID: exactly 8 hex digits')
    id = id:upper()
    check(is_hex(f.openid, 8), 'invalid Lierda OpenID: exactly 8 hex digits')
    check(is_hex(f.product_key, 32), 'invalid Lierda ProductKey: exactly 32 hex digits')
    check(f.auth_type == '0' or f.auth_type == '1' or f.auth_type == '2', 'invalid auth type: 0, 1 or 2')
    check(f.encrypted == nil or is_bool(f.encrypted), 'invalid encrypted flag: 0 or 1')
    h.openid = f.openid:upper()
    h.product_key = f.product_key:upper()
    h.auth_type = f.auth_type
    h.encrypted = f.encrypted or '0'
    h.limit = valid_limit(f.limit)
  elseif protocol == 'krt' then
    check(is_ident(id), 'invalid KRT ProductID: 1-64 of A-Z a-z 0-9 _ -')
    check(is_secret(f.product_secret), 'invalid KRT ProductSecret: 8-128 printable ASCII characters, no spaces')
    check(f.dynamic_register == nil or is_bool(f.dynamic_register), 'invalid dynamic_register: 0 or 1')
    check(f.auto_create == nil or is_bool(f.auto_create), 'invalid auto_create: 0 or 1')
    h.product_secret = f.product_secret
    h.dynamic_register = f.dynamic_register or '0'
    h.auto_create = f.auto_create or '0'
    h.limit = valid_limit(f.limit)
  else
    check(f.namespace == 'wudun' or f.namespace == 'user', 'invalid EMU namespace: wudun or user')
    if f.namespace == 'wudun' then
      check(is_ident(id), 'invalid EMU product key: 1-64 of A-Z a-z 0-9 _ -')
    else
      check(is_ident(id), 'invalid EMU tenant: 1-64 of A-Z a-z 0-9 _ -')
    end
    h.namespace = f.namespace
  end

  if exists(k_product(id)) or redis.call('SISMEMBER', k_products(), id) == 1 then
    local other = redis.call('HGET', k_product(id), 'protocol')
    if type(other) == 'string' then
      fail("product '" .. id .. "' already exists (" .. other .. ')')
    end
    fail("product '" .. id .. "' already exists")
  end
  local clash = topic_clash(protocol, id, h.openid)
  if clash then fail(clash) end

  h.protocol = protocol
  h.enabled = '1'
  h.created_at = now()
  hset(k_product(id), h)
  redis.call('SADD', k_products(), id)
  changed('product', id)
  return product_json(id, h, { secrets = true })
end

return run(main)
