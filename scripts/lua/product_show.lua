-- product show: ARGV[2] product id, ARGV[3] '1' to include product_key / product_secret.
local function main()
  local id, h = get_product(ARGV[2])
  return product_json(id, h, { secrets = ARGV[3] == '1', count = true })
end

return run(main)
