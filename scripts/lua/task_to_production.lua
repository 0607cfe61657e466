-- task to-production (seed 002 op 10): ARGV[2] operator, ARGV[3] task id, then field/value pairs:
-- name, description, scope_category (0|1), devices (comma-separated). Only a test task; it becomes a
-- production task in status 2 (waiting), not approved, with no reviewer. Scope: devices given ->
-- category 1 with them; category 0 -> every device of the product; neither -> unchanged.
-- Returns the task.
local FIELDS = { name = true, description = true, scope_category = true, devices = true }

local function main()
  local operator, id, h, f = task_request(FIELDS, 'field')
  local set = {}
  if f.name then
    local n = text_len(f.name)
    if not n or n < 1 or n > 32 then bad_arg('invalid --name: 1-32 characters of UTF-8 text, no control characters') end
    set.name = f.name
  end
  if f.description then
    local n = text_len(f.description)
    if not n or n > 250 then bad_arg('invalid --description: at most 250 characters of UTF-8 text, no control characters') end
    set.description = f.description
  end
  local cat = f.scope_category
  if cat ~= nil and not is_bool(cat) then bad_arg('invalid --scope-category: 0 (every device) or 1 (listed devices)') end
  if f.devices ~= nil then
    if cat == '0' then bad_arg('--devices needs --scope-category 1 (or none)') end
    local list = split_ids(f.devices, 'device id')
    if #list == 0 then bad_arg('--devices: at least one device id') end
    for _, did in ipairs(list) do
      check(redis.call('SISMEMBER', k_devices(h.product_id), did) == 1,
        "unknown device '" .. did .. "' of product '" .. h.product_id .. "'", 'notfound')
    end
    set.scope_category, set.device_list = '1', jstr_array(list)
  elseif cat == '1' then
    bad_arg('--scope-category 1 needs --devices')
  elseif cat == '0' then
    set.scope_category, set.device_list = '0', '[]'
  end
  check(h.tag_type == '1', 'task ' .. id .. ' is not a test task (already production)', 'conflict')

  set.tag_type, set.status, set.approved, set.audit_member_id = '0', '2', '0', ''
  local sec, usec = clock()
  hset(k_task(id), set)
  if set.name then index_task_name(h.product_id, id, set.name) end
  for k, v in pairs(set) do h[k] = v end
  local what = {}
  if set.name then what[#what + 1] = 'name' end
  if set.description then what[#what + 1] = 'description' end
  if set.scope_category then what[#what + 1] = 'scope' end
  oplog(id, operator, 'to-production', 'test -> production, status 2 waiting' ..
    (#what > 0 and ('; changed ' .. table.concat(what, ', ')) or ''), sec, usec)
  changed('task', id)
  return task_json(h)
end

return run(main)
