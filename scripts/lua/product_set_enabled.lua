-- product enable / disable: ARGV[2] product id, ARGV[3] '1' (enable) or '0' (disable).
local function main()
  local value = ARGV[3]
  check(is_bool(value), 'invalid enabled value: 0 or 1')
  local id = find_product(ARGV[2])
  redis.call('HSET', k_product(id), 'enabled', value)
  changed('product', id)
  return product_json(id, hgetall(k_product(id)), { count = true })
end

return run(main)
