-- token add (HTTP API access tokens): ARGV[2] member, ARGV[3] SHA-256 of the token (64 lower-case hex
-- digits; the token itself never reaches Redis). Stores P api:token:{hash} and adds the hash to
-- P api:tokens. Returns {"id": first 12 digits of the hash, "member", "created_at"}.
local function main()
  local member, hash = ARGV[2], ARGV[3]
  if not is_member(member) then bad_arg('invalid --member: 1-64 of A-Z a-z 0-9 _ - . @') end
  check(is_str(hash) and #hash == 64 and hash:match('^[0-9a-f]+$') ~= nil, 'invalid token hash: 64 lower-case hex digits')
  local key = P .. 'api:token:' .. hash
  check(not exists(key), 'that token exists already', 'conflict')
  local created = now()
  redis.call('HSET', key, 'member', member, 'hash', hash, 'created_at', created)
  redis.call('SADD', P .. 'api:tokens', hash)
  return jobj({ id = hash:sub(1, 12), member = member, created_at = created }, { 'id', 'member', 'created_at' })
end

return run(main)
