-- token revoke: ARGV[2] a token id (the first 8-64 hex digits of its hash, as token list shows them).
-- Deletes the one token whose hash starts with it; refuses an id that matches none or several.
-- Returns {"revoked": id, "member": member}.
local function main()
  local id = ARGV[2]
  if not (is_str(id) and #id >= 8 and #id <= 64 and id:match('^[0-9a-fA-F]+$')) then
    bad_arg('invalid token id: 8-64 hex digits (see token list)')
  end
  id = id:lower()
  local found
  for _, hash in ipairs(redis.call('SMEMBERS', P .. 'api:tokens')) do
    if hash:sub(1, #id) == id then
      check(found == nil, "token id '" .. id .. "' matches several tokens: give more digits", 'usage')
      found = hash
    end
  end
  check(found ~= nil, "unknown token '" .. id .. "'", 'notfound')
  local key = P .. 'api:token:' .. found
  local member = redis.call('HGET', key, 'member') or ''
  redis.call('DEL', key)
  redis.call('SREM', P .. 'api:tokens', found)
  return jobj({ revoked = found:sub(1, 12), member = member }, { 'revoked', 'member' })
end

return run(main)
