-- device enable / disable: ARGV[2] product id, ARGV[3] device id, ARGV[4] '1' or '0'.
local function main()
  local value = ARGV[4]
  check(is_bool(value), 'invalid enabled value: 0 or 1')
  local pid, product = get_product(ARGV[2])
  local did = find_device(pid, ARGV[3])
  redis.call('HSET', k_device(pid, did), 'enabled', value)
  changed('device', pid .. ':' .. did)
  return device_json(pid, did, product.protocol, hgetall(k_device(pid, did)), {})
end

return run(main)
