-- task push (manual push): ARGV[2] operator, ARGV[3] task id, ARGV[4] comma-separated device ids
-- (empty: every device in the task's scope). The task must be running; listed devices must be in its
-- scope. Appends kind push to the commands stream (the plugin notifies the devices) and an entry to
-- the task's operation log. Returns the command.
local function main()
  local operator = ARGV[2]
  check(is_member(operator), 'invalid operator: 1-64 of A-Z a-z 0-9 _ - . @')
  local id, h = get_task(ARGV[3])
  local list = split_ids(ARGV[4], 'device id')
  check(h.status == '1', 'task ' .. id .. ' is not running (status ' .. tostring(h.status) .. '): start it first')
  if #list > 0 then
    local scope = {}
    for _, did in ipairs(task_scope(h)) do scope[did] = true end
    for _, did in ipairs(list) do
      check(scope[did], "device '" .. did .. "' is not in the scope of task " .. id)
    end
  end
  local devices = table.concat(list, ',')
  local sec, usec = clock()
  local sid = command('kind', 'push', 'task', id, 'devices', devices)
  oplog(id, operator, 'push', #list > 0 and ('manual push to ' .. devices) or 'manual push to every device in scope', sec, usec)
  return jobj({ stream_id = sid, kind = 'push', task = id, devices = { raw = jstr_array(list) } },
    { 'stream_id', 'kind', 'task', 'devices' })
end

return run(main)
