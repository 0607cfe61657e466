-- task delete (seed 002 op 4): ARGV[2] operator, ARGV[3] task id. Removes the task hash, its entries in
-- the task indexes, its unique key, its progress hash and its operation log; one change entry.
-- The OTA logs (P ota:logs) are history and stay.
local function main()
  check(is_member(ARGV[2]), 'invalid operator: 1-64 of A-Z a-z 0-9 _ - . @')
  local id, h = get_task(ARGV[3])
  local ukey = k_unique(h.product_id, h.type, h.identify, h.from_version)
  if redis.call('GET', ukey) == id then redis.call('DEL', ukey) end
  redis.call('DEL', k_task(id), k_ota('progress:' .. id), k_ota('oplog:' .. id))
  redis.call('SREM', k_ota('tasks'), id)
  redis.call('ZREM', k_ota('tasks:' .. h.product_id), id)
  changed('task', id)
  return jobj({ deleted = id })
end

return run(main)
