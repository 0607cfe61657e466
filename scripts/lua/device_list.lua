-- device list: ARGV[2] product id. The product's devices (without secrets), sorted by device id.
local function main()
  local pid, product = get_product(ARGV[2])
  local items = {}
  for _, did in ipairs(sorted_members(k_devices(pid))) do
    local key = k_device(pid, did)
    if exists(key) then
      items[#items + 1] = device_json(pid, did, product.protocol, hgetall(key), {})
    end
  end
  return jarr(items)
end

return run(main)
