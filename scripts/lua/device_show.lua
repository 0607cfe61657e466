-- device show: ARGV[2] product id, ARGV[3] device id, ARGV[4] '1' to include secret / session_key.
local function main()
  local pid, product = get_product(ARGV[2])
  local did, h = get_device(pid, ARGV[3])
  return device_json(pid, did, product.protocol, h, { secrets = ARGV[4] == '1' })
end

return run(main)
