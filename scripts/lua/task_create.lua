-- task create (seed 002 op 1): ARGV[2] operator, then field/value pairs:
--   product_id, name, description, type, identify, from_version, from_version_url, from_version_md5,
--   from_version_size, target_version, target_version_url, target_version_md5, target_version_size,
--   task_type, tag_type, devices (comma-separated; present = scope category 1), rate_limit,
--   gray_percent, ack_timeout, upgrade_timeout
-- Absent fields take their defaults. Returns the new task.
local FIELDS = {
  product_id = true, name = true, description = true, type = true, identify = true,
  from_version = true, from_version_url = true, from_version_md5 = true, from_version_size = true,
  target_version = true, target_version_url = true, target_version_md5 = true, target_version_size = true,
  task_type = true, tag_type = true, devices = true, rate_limit = true, gray_percent = true,
  ack_timeout = true, upgrade_timeout = true,
}

local function main()
  local operator = ARGV[2]
  check(is_member(operator), 'invalid operator: 1-64 of A-Z a-z 0-9 _ - . @')
  check(#ARGV % 2 == 0, 'field without a value')
  local f = {}
  for i = 3, #ARGV, 2 do
    if not FIELDS[ARGV[i]] then bad_arg('unknown task field ' .. ARGV[i]) end
    f[ARGV[i]] = ARGV[i + 1]
  end

  local pid = find_product(f.product_id or '')
  local h = { product_id = pid }

  local n = text_len(f.name or '')
  if not n or n < 1 or n > 32 then bad_arg('invalid --name: 1-32 characters of UTF-8 text, no control characters') end
  h.name = f.name
  n = text_len(f.description or '')
  if not n or n > 250 then bad_arg('invalid --description: at most 250 characters of UTF-8 text, no control characters') end
  h.description = f.description or ''

  local ttype = task_type_arg(f.type or 'wifi')
  if not ttype then bad_arg('invalid --type: wifi, mcu or sub-device (or 1, 2, 3)') end
  h.type = ttype
  h.identify = identify_arg(ttype, f.identify)

  for _, side in ipairs({ 'from', 'target' }) do
    local v, url, md5, size = f[side .. '_version'], f[side .. '_version_url'], f[side .. '_version_md5'], f[side .. '_version_size']
    if not is_version(v) then bad_arg('invalid --' .. side .. '-version: 1-64 printable ASCII characters, no spaces') end
    h[side .. '_version'] = v
    local given = (url or '') ~= '' or (md5 or '') ~= '' or (size or '') ~= ''
    if side == 'target' or given then
      if not is_url(url) then bad_arg('invalid --' .. side .. '-url: an http:// or https:// URL (printable ASCII, no spaces)') end
      if not is_hex(md5, 32) then bad_arg('invalid --' .. side .. '-md5: 32 hex digits') end
      if not is_uint(size, 15) then bad_arg('invalid --' .. side .. '-size: a non-negative integer of bytes') end
    end
    h[side .. '_version_url'] = url or ''
    h[side .. '_version_md5'] = (md5 or ''):lower()
    h[side .. '_version_size'] = size or ''
  end
  if h.from_version == h.target_version then bad_arg('--target-version must differ from --from-version') end

  h.task_type = f.task_type or '0'
  if not is_bool(h.task_type) then bad_arg('invalid --task-type: 0 (automatic) or 1 (manual)') end
  h.tag_type = f.tag_type or '0'
  if not is_bool(h.tag_type) then bad_arg('invalid --tag-type: 0 (production) or 1 (test)') end

  if f.devices ~= nil then
    local list = split_ids(f.devices, 'device id')
    if #list == 0 then bad_arg('--devices: at least one device id') end
    for _, did in ipairs(list) do
      check(redis.call('SISMEMBER', k_devices(pid), did) == 1, "unknown device '" .. did .. "' of product '" .. pid .. "'", 'notfound')
    end
    h.scope_category, h.device_list = '1', jstr_array(list)
  else
    if h.tag_type == '1' then bad_arg('a test task (--tag-type 1) needs --devices') end
    h.scope_category, h.device_list = '0', '[]'
  end

  h.rate_limit = f.rate_limit or '0'
  if not is_uint(h.rate_limit, 9) then bad_arg('invalid --rate-limit: notifications per minute, a non-negative integer (0 = no limit)') end
  h.gray_percent = f.gray_percent or '100'
  if not is_uint(h.gray_percent, 3) or tonumber(h.gray_percent) < 1 or tonumber(h.gray_percent) > 100 then
    bad_arg('invalid --gray-percent: 1-100')
  end
  h.ack_timeout = f.ack_timeout or '600'
  if not is_uint(h.ack_timeout, 9) or h.ack_timeout == '0' then bad_arg('invalid --ack-timeout: a positive number of seconds') end
  h.upgrade_timeout = f.upgrade_timeout or '86400'
  if not is_uint(h.upgrade_timeout, 9) or h.upgrade_timeout == '0' then bad_arg('invalid --upgrade-timeout: a positive number of seconds') end

  local ukey = k_unique(pid, h.type, h.identify, h.from_version)
  local holder = redis.call('GET', ukey)
  if holder and exists(k_task(holder)) then
    fail('product ' .. pid .. ' already has task ' .. holder .. ' for type ' .. h.type .. ', identify ' ..
      h.identify .. ' and from version ' .. h.from_version .. ' (type+identify+from_version is unique)', 'conflict')
  end

  local sec, usec = clock()
  local id = tostring(redis.call('INCR', k_ota('task_seq')))
  h.id = id
  h.upgrade_count = '0'
  h.status = h.tag_type == '1' and '0' or '2'
  h.approved = '0'
  h.audit_member_id = ''
  h.create_time = iso_time(sec, usec)
  h.created_at = string.format('%d', sec * 1000 + math.floor(usec / 1000))
  hset(k_task(id), h)
  redis.call('SADD', k_ota('tasks'), id)
  redis.call('ZADD', k_ota('tasks:' .. pid), h.created_at, id)
  index_task_name(pid, id, h.name)
  redis.call('SET', ukey, id)
  oplog(id, operator, 'create', (h.tag_type == '1' and 'test' or 'production') .. ' task "' .. h.name .. '": ' ..
    h.type .. '/' .. h.identify .. ' ' .. h.from_version .. ' -> ' .. h.target_version .. ', status ' .. h.status, sec, usec)
  changed('task', id)
  return task_json(h)
end

return run(main)
