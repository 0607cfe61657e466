-- emu version|upgrade|upgrade-result: a command to an EMU gateway (seed 000). ARGV[2] namespace
-- (wudun for --product-key, user for --tenant), ARGV[3] product key / tenant, ARGV[4] device uid,
-- ARGV[5] topic name (emu_version, emu_upgrade, emu_upgrade_result), ARGV[6] sub_device_id (empty:
-- omitted), ARGV[7] trace_id, ARGV[8] mid (UUIDs made by the CLI), ARGV[9] download URL, ARGV[10] MD5
-- (emu_upgrade only).
-- Builds the frame {"trace_id","mid","type","device_uid","sub_device_id","timestamp","data"} (type as
-- seed 000 gives it: emu_version, ota_upgrade, emu_upgrade_result; data only for the upgrade), and
-- appends kind publish with the command topic, the frame and the gateway (product, device) to the commands stream: the
-- broker that holds the gateway's session publishes it.
-- Returns {"topic": .., "payload": <the frame>}.
local TYPES = { emu_version = 'emu_version', emu_upgrade = 'ota_upgrade', emu_upgrade_result = 'emu_upgrade_result' }
local UUID = '^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$'

local function main()
  local ns, pref, name, sub, trace, mid = ARGV[2], ARGV[3], ARGV[5], ARGV[6] or '', ARGV[7], ARGV[8]
  check(TYPES[name] ~= nil, 'unknown EMU command (emu_version, emu_upgrade, emu_upgrade_result)')
  local product = get_emu_product(ns, pref)
  local did = find_device(pref, ARGV[4])
  if sub ~= '' and not is_uint(sub, 9) then bad_arg('invalid --sub-device-id: a non-negative integer') end
  check(is_str(trace) and trace:match(UUID) ~= nil and is_str(mid) and mid:match(UUID) ~= nil, 'invalid trace_id / mid: UUIDs')
  local data
  if name == 'emu_upgrade' then
    if not is_url(ARGV[9]) then bad_arg('invalid --url: an http:// or https:// URL (printable ASCII, no spaces)') end
    if not is_hex(ARGV[10], 32) then bad_arg('invalid --md5: 32 hex digits') end
    data = { raw = jobj({ download_url = ARGV[9], md5_code = ARGV[10]:lower() }, { 'download_url', 'md5_code' }) }
  end
  local sec, usec = clock()
  local frame = jobj({
    trace_id = trace, mid = mid, type = TYPES[name], device_uid = did,
    sub_device_id = sub ~= '' and tonumber(sub) or nil,
    timestamp = sec * 1000 + math.floor(usec / 1000),
    data = data,
  }, { 'trace_id', 'mid', 'type', 'device_uid', 'sub_device_id', 'timestamp', 'data' })
  local topic = 'v1/' .. product.namespace .. '/' .. pref .. '/' .. did .. '/ota/' .. name .. '/command'
  command('kind', 'publish', 'topic', topic, 'payload', frame, 'product', pref, 'device', did)
  return jobj({ topic = topic, payload = { raw = frame } }, { 'topic', 'payload' })
end

return run(main)
