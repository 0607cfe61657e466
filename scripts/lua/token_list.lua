-- token list: every HTTP API token as {"id": first 12 digits of its hash, "member", "created_at"},
-- sorted by member, then creation, then id. Never the token (only its hash is stored). Read only.
local function main()
  local rows = {}
  for _, hash in ipairs(redis.call('SMEMBERS', P .. 'api:tokens')) do
    local h = hgetall(P .. 'api:token:' .. hash)
    if h.member then
      rows[#rows + 1] = { id = hash:sub(1, 12), member = h.member, created_at = h.created_at or '0' }
    end
  end
  table.sort(rows, function(a, b)
    if a.member ~= b.member then return a.member < b.member end
    if a.created_at ~= b.created_at then return compare(a.created_at, b.created_at) < 0 end
    return a.id < b.id
  end)
  local items = {}
  for i, r in ipairs(rows) do items[i] = jobj(r, { 'id', 'member', 'created_at' }) end
  return jarr(items)
end

return run(main)
