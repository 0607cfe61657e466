-- device ask-firmware: ARGV[2] product id, ARGV[3] device id. A Lierda device is asked for its
-- firmware version (HeaderCtrl 13 on its ask_firmware topic): appends kind ask_firmware to the
-- commands stream for the plugin. Returns the command.
local function main()
  local pid, product = get_product(ARGV[2])
  check(product.protocol == 'lierda', "product '" .. pid .. "' is a " .. tostring(product.protocol) ..
    ' product: ask-firmware is a Lierda command')
  local did = find_device(pid, ARGV[3])
  local sid = command('kind', 'ask_firmware', 'product', pid, 'device', did)
  return jobj({ stream_id = sid, kind = 'ask_firmware', product = pid, device = did },
    { 'stream_id', 'kind', 'product', 'device' })
end

return run(main)
