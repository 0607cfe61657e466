-- task report (seed 002 op 6): a device's upgrade result, entered by hand. ARGV[2] operator,
-- ARGV[3] task id, then field/value pairs: device, last_version, current_version, result (0 success,
-- 1 failure), and optionally type, identify (must match the task), mod, desc, start_date, end_date.
-- An empty task id (the seed's report names none) means the task of the device's product (field
-- product_id, else the one product that has the device) whose type + identify + from version are the
-- report's type (default wifi), identify and last_version: that combination is unique per product.
-- The device must be in the task's scope and must not have succeeded already. Success needs
-- current_version = the task's target version. Writes the device's progress entry (state succeeded or
-- failed), its version for the task's module; on success adds 1 to upgrade_count and appends an OTA
-- log with status 2. Returns {"task":..,"device":..,"progress":{..},"upgrade_count":N}.
local FIELDS = { device = true, last_version = true, current_version = true, result = true, type = true,
  identify = true, mod = true, desc = true, start_date = true, end_date = true, product_id = true }

local function is_date(s)
  return is_str(s) and s:match('^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.?%d*Z$') ~= nil
end

-- the task a report without a task id is about (see above); returns id, hash
local function find_task(f)
  local did = f.device or ''
  check(is_ref(did), 'invalid device id: 1-64 of A-Z a-z 0-9 _ -')
  local pid
  if (f.product_id or '') ~= '' then
    pid = find_product(f.product_id)
  else
    for _, p in ipairs(sorted_members(k_products())) do
      if redis.call('SISMEMBER', k_devices(p), did) == 1 then
        check(pid == nil, "device id '" .. did .. "' is used by several products: name the product", 'usage')
        pid = p
      end
    end
    check(pid ~= nil, "unknown device '" .. did .. "'", 'notfound')
  end
  local ttype = task_type_arg((f.type or '') == '' and 'wifi' or f.type)
  if not ttype then bad_arg('invalid --type: wifi, mcu or sub-device (or 1, 2, 3)') end
  local identify = identify_arg(ttype, f.identify)
  if not is_version(f.last_version) then bad_arg('invalid --last-version: 1-64 printable ASCII characters, no spaces') end
  local id = redis.call('GET', k_unique(pid, ttype, identify, f.last_version))
  check(id and exists(k_task(id)), 'no task of product ' .. pid .. ' upgrades ' .. ttype .. '/' .. identify ..
    ' from version ' .. f.last_version, 'notfound')
  return get_task(id)
end

local function main()
  local operator, id, h, f
  if (ARGV[3] or '') == '' then
    operator = ARGV[2]
    check(is_member(operator), 'invalid operator: 1-64 of A-Z a-z 0-9 _ - . @')
    f = arg_fields(4, FIELDS, 'report field')
    id, h = find_task(f)
  else
    operator, id, h, f = task_request(FIELDS, 'report field')
    check_task_product(id, h, f.product_id)
  end
  if not is_version(f.last_version) then bad_arg('invalid --last-version: 1-64 printable ASCII characters, no spaces') end
  if not is_version(f.current_version) then bad_arg('invalid --current-version: 1-64 printable ASCII characters, no spaces') end
  if f.result ~= '0' and f.result ~= '1' then bad_arg('invalid --result: 0 (success) or 1 (failure)') end
  if f.type and f.type ~= '' then
    local t = task_type_arg(f.type)
    if not t then bad_arg('invalid --type: wifi, mcu or sub-device (or 1, 2, 3)') end
    check(t == h.type, 'task ' .. id .. ' is of type ' .. h.type .. ', not ' .. t)
  end
  if f.identify and f.identify ~= '' then
    local ident = identify_arg(h.type, f.identify)
    check(ident == h.identify, 'task ' .. id .. ' is for identify ' .. h.identify .. ', not ' .. ident)
  end
  if f.mod and f.mod ~= '' and (not text_len(f.mod) or #f.mod > 64) then bad_arg('invalid --mod: at most 64 bytes of text') end
  local dl = f.desc and text_len(f.desc)
  if f.desc and (not dl or dl > 250) then bad_arg('invalid --desc: at most 250 characters of text') end
  for _, k in ipairs({ 'start_date', 'end_date' }) do
    if f[k] and f[k] ~= '' and not is_date(f[k]) then
      bad_arg('invalid --' .. k:gsub('_', '-') .. ': yyyy-MM-ddTHH:mm:ss[.fff]Z, e.g. 2015-10-09T08:15:40.843Z')
    end
  end

  local did = find_device(h.product_id, f.device or '')
  local in_scope = false
  for _, d in ipairs(task_scope(h)) do
    if d == did then in_scope = true break end
  end
  check(in_scope, "device '" .. did .. "' is not in the scope of task " .. id, 'conflict')
  local pkey = k_ota('progress:' .. id)
  local prev = {}
  local old = redis.call('HGET', pkey, did)
  if old then
    local ok, v = pcall(cjson.decode, old)
    if ok and type(v) == 'table' then prev = v end
  end
  check(prev.state ~= 'succeeded', "device '" .. did .. "' already succeeded in task " .. id, 'conflict')
  local success = f.result == '0'
  if success then
    check(f.current_version == h.target_version, 'result 0 (success) but --current-version ' .. f.current_version ..
      ' is not the target version ' .. h.target_version)
  end

  local sec, usec = clock()
  -- keep what the plugin wrote (down_id, notified_at, acked_at, ...), as raw JSON values
  local t = {}
  for k, v in pairs(prev) do
    local ok, js = pcall(cjson.encode, v)
    if ok and type(k) == 'string' then t[k] = { raw = (js:gsub('\\/', '/')) } end
  end
  t.state = success and 'succeeded' or 'failed'
  t.finished_at = sec
  t.reported = f.current_version
  t.last_version = f.last_version
  for _, k in ipairs({ 'mod', 'desc', 'start_date', 'end_date' }) do
    if f[k] and f[k] ~= '' then t[k] = f[k] end
  end
  local progress = jobj(t, { 'state', 'down_id', 'notified_at', 'acked_at', 'finished_at', 'reported' })
  redis.call('HSET', pkey, did, progress)
  redis.call('HSET', k_version(h.product_id, did), h.identify, f.current_version, 'updated_at', tostring(sec))
  local count = tonumber(redis.call('HGET', k_task(id), 'upgrade_count')) or 0
  if success then
    count = redis.call('HINCRBY', k_task(id), 'upgrade_count', 1)
    ota_log(h.product_id, id, did, 2, '', '', sec, usec)
  end
  oplog(id, operator, 'report', "device '" .. did .. "' " .. f.last_version .. ' -> ' .. f.current_version .. ': ' ..
    (success and 'succeeded' or 'failed'), sec, usec)
  changed('task', id)
  return jobj({ task = id, device = did, progress = { raw = progress }, upgrade_count = count },
    { 'task', 'device', 'progress', 'upgrade_count' })
end

return run(main)
