-- product page (HTTP API, console): ARGV[2] offset (default 0), ARGV[3] limit (default 10).
-- Products sorted by id: {"count": N, "list": [{"product_id", "protocol", "enabled" (boolean),
-- "device_count"}]}, count being every product. Read only.
local function main()
  local offset, limit = paging(ARGV[2], ARGV[3])
  local items = {}
  for _, id in ipairs(redis.call('SORT_RO', k_products(), 'ALPHA', 'LIMIT', offset, limit)) do
    local h = hgetall(k_product(id))
    if h.protocol then
      items[#items + 1] = jobj({ product_id = id, protocol = h.protocol, enabled = h.enabled == '1',
        device_count = redis.call('SCARD', k_devices(id)) }, { 'product_id', 'protocol', 'enabled', 'device_count' })
    end
  end
  return jobj({ count = redis.call('SCARD', k_products()), list = { raw = jarr(items) } }, { 'count', 'list' })
end

return run(main)
