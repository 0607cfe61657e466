-- task devices (seed 002 op 13): ARGV[2] operator, ARGV[3] task id, ARGV[4] add|remove|replace,
-- ARGV[5] comma-separated device ids. Only test tasks. add: devices of the product, appended (already
-- listed ones are kept once); remove: listed devices; replace: devices of the product. The list may not
-- become empty. Progress of removed devices is kept. Returns the task.
local function main()
  local operator, mode = ARGV[2], ARGV[4]
  check(is_member(operator), 'invalid operator: 1-64 of A-Z a-z 0-9 _ - . @')
  if mode ~= 'add' and mode ~= 'remove' and mode ~= 'replace' then bad_arg('give one of --add, --remove, --replace') end
  local id, h = get_task(ARGV[3])
  local given = split_ids(ARGV[5], 'device id')
  if #given == 0 then bad_arg('--' .. mode .. ': at least one device id') end
  check(h.tag_type == '1', 'task ' .. id .. ' is not a test task: only the devices of a test task can be changed', 'conflict')
  local cur = decode_list(h.device_list)
  local listed = {}
  for _, d in ipairs(cur) do listed[d] = true end
  local list = {}
  if mode == 'remove' then
    local drop = {}
    for _, d in ipairs(given) do
      check(listed[d], "device '" .. d .. "' is not in the device list of task " .. id)
      drop[d] = true
    end
    for _, d in ipairs(cur) do
      if not drop[d] then list[#list + 1] = d end
    end
    check(#list > 0, 'a test task needs at least one device: task ' .. id .. ' would have none')
  else
    for _, d in ipairs(given) do
      check(redis.call('SISMEMBER', k_devices(h.product_id), d) == 1,
        "unknown device '" .. d .. "' of product '" .. h.product_id .. "'", 'notfound')
    end
    if mode == 'add' then
      for _, d in ipairs(cur) do list[#list + 1] = d end
      for _, d in ipairs(given) do
        if not listed[d] then list[#list + 1] = d end
      end
    else
      list = given
    end
  end
  local sec, usec = clock()
  local js = jstr_array(list)
  redis.call('HSET', k_task(id), 'scope_category', '1', 'device_list', js)
  h.scope_category, h.device_list = '1', js
  oplog(id, operator, 'devices', mode .. ' ' .. table.concat(given, ',') .. '; now ' .. #list .. ' device(s)', sec, usec)
  changed('task', id)
  return task_json(h)
end

return run(main)
