-- device delete: ARGV[2] product id, ARGV[3] device id. Removes the device hash, its entry in the
-- product's devices set, the login times, versions and EMU results the plugin stored for it and, for EMU, its emu_uid
-- key; one change entry.
local function main()
  local pid, product = get_product(ARGV[2])
  local did = find_device(pid, ARGV[3])
  redis.call('DEL', k_device(pid, did))
  remove_device_state(pid, did)
  redis.call('SREM', k_devices(pid), did)
  if product.protocol == 'emu' and redis.call('GET', k_emu_uid(did)) == pid then
    redis.call('DEL', k_emu_uid(did))
  end
  changed('device', pid .. ':' .. did)
  return jobj({ deleted = pid .. ':' .. did })
end

return run(main)
