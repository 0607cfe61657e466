-- product delete: ARGV[2] product id. Removes the product hash, every device hash of it (with the login times,
-- versions and EMU results the plugin stored for it), its devices set, the emu_uid keys its devices own, its upgrade
-- tasks, and its entry in the products set; one change entry (and one per task).
local function main()
  local id, h = get_product(ARGV[2])
  for _, did in ipairs(redis.call('SMEMBERS', k_devices(id))) do
    redis.call('DEL', k_device(id, did))
    remove_device_state(id, did)
    if h.protocol == 'emu' and redis.call('GET', k_emu_uid(did)) == id then
      redis.call('DEL', k_emu_uid(did))
    end
  end
  for _, tid in ipairs(redis.call('ZRANGE', k_ota('tasks:' .. id), 0, -1)) do
    local h = hgetall(k_task(tid))
    if h.product_id then remove_task(tid, h) end
  end
  redis.call('DEL', k_devices(id), k_product(id), k_last_online(id), k_last_offline(id))
  redis.call('SREM', k_products(), id)
  changed('product', id)
  return jobj({ deleted = id })
end

return run(main)
