-- device add: ARGV[2] protocol (lierda|krt|emu), ARGV[3] product id, ARGV[4] device id,
-- ARGV[5] EMU namespace the operator named the product with (wudun for --product-key, user for
-- --tenant; empty for the other protocols), ARGV[6] lierda/krt: the DeviceSecret, emu: the $7$ hash
-- of the gateway's secret (the CLI hashes it; the plaintext never reaches Redis).
-- Returns the device; for EMU its "secret" is the placeholder "@SECRET@" that the CLI replaces with
-- the plaintext.
local function main()
  local protocol, pref, did, ns, secret = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
  check(protocol == 'lierda' or protocol == 'krt' or protocol == 'emu', 'unknown protocol (lierda, krt or emu)')

  if protocol == 'lierda' then
    check(is_hex(pref, 8), 'invalid Lierda ProductID: exactly 8 hex digits')
    pref = pref:upper()
    check(is_eui(did), 'invalid NodeEui: 4-32 ASCII letters and digits')
    check(is_hex(secret, 32), 'invalid Lierda DeviceSecret: exactly 32 hex digits')
    secret = secret:upper()
  elseif protocol == 'krt' then
    check(is_ident(pref), 'invalid KRT ProductID: 1-64 of A-Z a-z 0-9 _ -')
    check(is_ident(did), 'invalid KRT DeviceID: 1-64 of A-Z a-z 0-9 _ -')
    check(is_secret(secret), 'invalid KRT DeviceSecret: 8-128 printable ASCII characters, no spaces')
  else
    check(ns == 'wudun' or ns == 'user', 'invalid EMU namespace: wudun or user')
    check(is_ident(pref), 'invalid EMU ' .. (ns == 'wudun' and 'product key' or 'tenant') .. ': 1-64 of A-Z a-z 0-9 _ -')
    check(is_ident(did), 'invalid EMU device uid: 1-64 of A-Z a-z 0-9 _ -')
    check(is_pw_hash(secret), 'invalid secret hash: not a $7$ PBKDF2-SHA512 hash')
  end

  check(exists(k_product(pref)), "unknown product '" .. pref .. "'")
  local product = hgetall(k_product(pref))
  check(product.protocol == protocol,
    "product '" .. pref .. "' is a " .. tostring(product.protocol) .. ' product, not ' .. protocol)
  if protocol == 'emu' then
    if product.namespace ~= ns then
      fail("EMU product '" .. pref .. "' has namespace " .. tostring(product.namespace) .. ' (use ' ..
        (product.namespace == 'user' and '--tenant' or '--product-key') .. ')')
    end
  end

  local key = k_device(pref, did)
  check(not exists(key) and redis.call('SISMEMBER', k_devices(pref), did) == 0,
    "device '" .. did .. "' of product '" .. pref .. "' already exists")
  if protocol == 'emu' then
    local owner = redis.call('GET', k_emu_uid(did))
    check(not owner, "EMU device uid '" .. did .. "' is already used by product '" .. tostring(owner) .. "'")
    check(not exists(k_account(did)) and redis.call('SISMEMBER', k_accounts(), did) == 0,
      "EMU device uid '" .. did .. "' is the name of an account")
  end

  local h = { enabled = '1', origin = 'cli', created_at = now() }
  if protocol == 'lierda' then
    h.secret = secret
  elseif protocol == 'krt' then
    h.secret = secret
    h.activated = '0'
  else
    h.secret_hash = secret
  end
  hset(key, h)
  redis.call('SADD', k_devices(pref), did)
  if protocol == 'emu' then redis.call('SET', k_emu_uid(did), pref) end
  changed('device', pref .. ':' .. did)

  local shown = {}
  for k, v in pairs(h) do shown[k] = v end
  if protocol == 'emu' then shown.secret = '@SECRET@' end
  return device_json(pref, did, protocol, shown, { secrets = true })
end

return run(main)
