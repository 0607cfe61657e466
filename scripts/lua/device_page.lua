-- device page (HTTP API, console): ARGV[2] product id, ARGV[3] offset (default 0), ARGV[4] limit
-- (default 10), ARGV[5] (optional) one device id: then that device alone.
-- A device: {"device_id", "enabled" (boolean), "online" (boolean: last login later than last logout),
-- "last_online", "last_offline" (create_time format, or null), "versions": {module: version}} (from
-- the plugin's times hashes and the device's reported versions). A page: {"count": N, "list": [...]},
-- devices sorted by id, count being every device of the product. Read only.
local function device_item(pid, did, h)
  local t = {}
  for _, field in ipairs({ 'last_online', 'last_offline' }) do
    local seen = tonumber(redis.call('HGET', P .. field .. ':' .. pid, did)) or 0
    local own = tonumber(h[field]) or 0
    t[field] = math.max(seen, own)
  end
  local versions = {}
  for k, v in pairs(hgetall(k_version(pid, did))) do
    if k ~= 'updated_at' and k:sub(1, 3) ~= 'hw:' then versions[k] = v end
  end
  return jobj({ device_id = did, enabled = h.enabled == '1', online = t.last_online > t.last_offline,
    last_online = t.last_online > 0 and iso_time(t.last_online, 0) or NULL,
    last_offline = t.last_offline > 0 and iso_time(t.last_offline, 0) or NULL,
    versions = { raw = jobj(versions) } },
    { 'device_id', 'enabled', 'online', 'last_online', 'last_offline', 'versions' })
end

local function main()
  local pid = find_product(ARGV[2])
  if (ARGV[5] or '') ~= '' then
    local did, h = get_device(pid, ARGV[5])
    return device_item(pid, did, h)
  end
  local offset, limit = paging(ARGV[3], ARGV[4])
  local items = {}
  for _, did in ipairs(redis.call('SORT_RO', k_devices(pid), 'ALPHA', 'LIMIT', offset, limit)) do
    local h = hgetall(k_device(pid, did))
    if next(h) then items[#items + 1] = device_item(pid, did, h) end
  end
  return jobj({ count = redis.call('SCARD', k_devices(pid)), list = { raw = jarr(items) } }, { 'count', 'list' })
end

return run(main)
