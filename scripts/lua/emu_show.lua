-- emu show: ARGV[2] namespace (wudun|user), ARGV[3] product key / tenant, ARGV[4] device uid.
-- The last result the gateway sent per sub-device (P emu:result:PRODUCT:DEVICE, written by the plugin):
-- {"product":..,"device":..,"results":{"SUB_DEVICE_ID" or "-": <result JSON>, ...}}. Read only.
local function main()
  local ns, pref = ARGV[2], ARGV[3]
  get_emu_product(ns, pref)
  local did = find_device(pref, ARGV[4])
  local res = {}
  for sub, js in pairs(hgetall(P .. 'emu:result:' .. pref .. ':' .. did)) do
    local ok, v = pcall(cjson.decode, js)
    if ok and type(v) == 'table' then
      res[sub] = { raw = (js:gsub('[\r\n]+', ' ')) }
    else
      res[sub] = js
    end
  end
  return jobj({ product = pref, device = did, results = { raw = jobj(res) } }, { 'product', 'device', 'results' })
end

return run(main)
