-- product list: every product (without secrets, with device_count), sorted by id.
local function main()
  local items = {}
  for _, id in ipairs(sorted_members(k_products())) do
    if exists(k_product(id)) then
      items[#items + 1] = product_json(id, hgetall(k_product(id)), { count = true })
    end
  end
  return jarr(items)
end

return run(main)
