-- creds: the connect values of a device. ARGV[2] protocol, ARGV[3] product id, ARGV[4] device id,
-- ARGV[5] EMU namespace named by the operator (wudun|user; empty otherwise).
--   lierda: returns the inputs the CLI needs to compute the V2 password (openid, product_id,
--           node_eui, product_key, secret); the CLI prints its own JSON.
--   krt, emu: returns the final JSON.
-- Read only.
local function main()
  local protocol, pref, did, ns = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
  check(protocol == 'lierda' or protocol == 'krt' or protocol == 'emu', 'unknown protocol (lierda, krt or emu)')
  if protocol == 'lierda' then
    check(is_hex(pref, 8), 'invalid Lierda ProductID: exactly 8 hex digits')
    pref = pref:upper()
    check(is_eui(did), 'invalid NodeEui: 4-32 ASCII letters and digits')
  else
    check(is_ident(pref), 'invalid product id: 1-64 of A-Z a-z 0-9 _ -')
    check(is_ident(did), 'invalid device id: 1-64 of A-Z a-z 0-9 _ -')
  end
  check(exists(k_product(pref)), "unknown product '" .. pref .. "'")
  local product = hgetall(k_product(pref))
  check(product.protocol == protocol,
    "product '" .. pref .. "' is a " .. tostring(product.protocol) .. ' product, not ' .. protocol)
  if protocol == 'emu' and product.namespace ~= ns then
    fail("EMU product '" .. pref .. "' has namespace " .. tostring(product.namespace) .. ' (use ' ..
      (product.namespace == 'user' and '--tenant' or '--product-key') .. ')')
  end
  local _, h = get_device(pref, did)

  if protocol == 'lierda' then
    check(is_hex(product.openid, 8) and is_hex(product.product_key, 32),
      "product '" .. pref .. "' has no valid OpenID / ProductKey")
    check(is_hex(h.secret, 32), "device '" .. did .. "' has no DeviceSecret")
    return jobj({ openid = product.openid:upper(), product_id = pref, node_eui = did,
                  product_key = product.product_key:upper(), secret = h.secret:upper() })
  elseif protocol == 'krt' then
    check(type(h.secret) == 'string' and h.secret ~= '', "device '" .. did .. "' has no DeviceSecret yet")
    return jobj({ client_id = pref .. '.' .. did, username = did, password = h.secret, client_id_shared = pref },
      { 'client_id', 'username', 'password', 'client_id_shared' })
  else
    return jobj({
      client_id = did,
      username = did,
      password = NULL,
      topic_prefix = 'v1/' .. product.namespace .. '/' .. pref .. '/' .. did .. '/',
      note = 'only a hash of the secret is stored; the secret was shown once by device add',
    }, { 'client_id', 'username', 'password', 'topic_prefix', 'note' })
  end
end

return run(main)
