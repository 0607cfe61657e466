-- creds: the connect values of a device. ARGV[2] protocol, ARGV[3] product id, ARGV[4] device id,
-- ARGV[5] EMU namespace named by the operator (wudun|user; empty otherwise), ARGV[6] lierda: the type 1
-- timestamp ('' for type 0).
--   lierda: returns openid, product_id, node_eui and the V2 password; the CLI prints its own JSON.
--   krt, emu: returns the final JSON.
-- Read only.
-- AES-128 encryption (FIPS-197) of the Lierda V2 password, computed here so that the DeviceSecret never leaves
-- Redis: the CLI would otherwise hand it to openssl on a command line, which every local user can read (ps).
local function rotl8(x, s) return bit.band(bit.bor(bit.lshift(x, s), bit.rshift(x, 8 - s)), 0xff) end
local function xtime(a)
  a = bit.lshift(a, 1)
  if a >= 0x100 then a = bit.bxor(a, 0x11b) end
  return a
end

-- The S-box from its definition: the multiplicative inverse in GF(2^8) followed by the affine transform. p walks
-- the field's elements as powers of the generator 3 while q walks the powers of its inverse, so q = 1/p.
local function aes_sbox()
  local sbox = { [0] = 0x63 }
  local p, q = 1, 1
  repeat
    p = bit.bxor(p, xtime(p))
    q = bit.bxor(q, bit.band(bit.lshift(q, 1), 0xff))
    q = bit.bxor(q, bit.band(bit.lshift(q, 2), 0xff))
    q = bit.bxor(q, bit.band(bit.lshift(q, 4), 0xff))
    if bit.band(q, 0x80) ~= 0 then q = bit.bxor(q, 0x09) end
    sbox[p] = bit.bxor(q, rotl8(q, 1), rotl8(q, 2), rotl8(q, 3), rotl8(q, 4), 0x63)
  until p == 1
  return sbox
end

-- The 176 bytes of the 11 round keys of a 16-byte key (0-based).
local function aes_round_keys(key, sbox)
  local w, rcon = {}, 1
  for i = 0, 15 do w[i] = key[i] end
  for i = 16, 175, 4 do
    local t0, t1, t2, t3 = w[i - 4], w[i - 3], w[i - 2], w[i - 1]
    if i % 16 == 0 then
      t0, t1, t2, t3 = bit.bxor(sbox[t1], rcon), sbox[t2], sbox[t3], sbox[t0]
      rcon = xtime(rcon)
    end
    w[i], w[i + 1], w[i + 2], w[i + 3] =
      bit.bxor(w[i - 16], t0), bit.bxor(w[i - 15], t1), bit.bxor(w[i - 14], t2), bit.bxor(w[i - 13], t3)
  end
  return w
end

-- One 16-byte block, state s[0..15] column by column, encrypted in place.
local function aes_encrypt_block(s, w, sbox)
  for i = 0, 15 do s[i] = bit.bxor(s[i], w[i]) end
  for round = 1, 10 do
    for i = 0, 15 do s[i] = sbox[s[i]] end
    -- ShiftRows: row r moves r columns to the left
    s[1], s[5], s[9], s[13] = s[5], s[9], s[13], s[1]
    s[2], s[6], s[10], s[14] = s[10], s[14], s[2], s[6]
    s[3], s[7], s[11], s[15] = s[15], s[3], s[7], s[11]
    if round < 10 then
      for c = 0, 12, 4 do
        local a0, a1, a2, a3 = s[c], s[c + 1], s[c + 2], s[c + 3]
        local all = bit.bxor(a0, a1, a2, a3)
        s[c] = bit.bxor(a0, all, xtime(bit.bxor(a0, a1)))
        s[c + 1] = bit.bxor(a1, all, xtime(bit.bxor(a1, a2)))
        s[c + 2] = bit.bxor(a2, all, xtime(bit.bxor(a2, a3)))
        s[c + 3] = bit.bxor(a3, all, xtime(bit.bxor(a3, a0)))
      end
    end
    local k = round * 16
    for i = 0, 15 do s[i] = bit.bxor(s[i], w[k + i]) end
  end
end

-- Upper-case hex of AES-128-ECB with PKCS#7 padding of `text` under the key `key_hex` (32 hex digits).
local function aes128_ecb_hex(key_hex, text)
  local sbox = aes_sbox()
  local key = {}
  for i = 0, 15 do key[i] = tonumber(key_hex:sub(2 * i + 1, 2 * i + 2), 16) end
  local w = aes_round_keys(key, sbox)
  local pad = 16 - #text % 16
  text = text .. string.rep(string.char(pad), pad)
  local out = {}
  for b = 1, #text, 16 do
    local s = {}
    for i = 0, 15 do s[i] = text:byte(b + i) end
    aes_encrypt_block(s, w, sbox)
    for i = 0, 15 do out[#out + 1] = string.format('%02X', s[i]) end
  end
  return table.concat(out)
end

local function main()
  local protocol, pref, did, ns, ts = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6] or ''
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
    check(ts == '' or ts:match('^[1-9]%d*$') or ts == '0', 'invalid timestamp')
    local plain = pref .. '.' .. did .. '_' .. product.product_key:upper()
    if ts ~= '' then plain = plain .. '_' .. ts end
    return jobj({ openid = product.openid:upper(), product_id = pref, node_eui = did,
                  password = aes128_ecb_hex(h.secret, plain) })
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
