-- task list (seed 002 op 2, GET form) / task query (op 7, POST form). ARGV[2] list|query,
-- ARGV[3] product id, ARGV[4] offset (default 0), ARGV[5] limit (default 10), ARGV[6] type filter
-- (empty: all), ARGV[7] tag_type filter (empty: all), ARGV[8] query JSON, ARGV[9] order JSON (query only).
--   query: {"id"|"_id"|"name": {"$eq": V} | {"$like": PATTERN} | V}; every condition must hold.
--   order: {"FIELD": "asc"|"desc", ...}, by the fields in the order written; then by id.
-- Default order: creation order. list returns a JSON array (the page); query returns
-- {"count": N, "list": [...]}, count being the number of matches before paging. Read only.
local ORDER_FIELDS = {
  id = 'id', _id = 'id', name = 'name', description = 'description', status = 'status', type = 'type',
  identify = 'identify', from_version = 'from_version', target_version = 'target_version',
  upgrade_count = 'upgrade_count', task_type = 'task_type', tag_type = 'tag_type',
  create_time = 'create_time', created_at = 'created_at', audit_member_id = 'audit_member_id',
}

local function main()
  local mode = ARGV[2]
  check(mode == 'list' or mode == 'query', 'unknown mode (list or query)')
  local pid = get_product(ARGV[3])
  local offset, limit = paging(ARGV[4], ARGV[5])
  local ttype = nil
  if (ARGV[6] or '') ~= '' then
    ttype = task_type_arg(ARGV[6])
    if not ttype then bad_arg('invalid --type: wifi, mcu or sub-device (or 1, 2, 3)') end
  end
  local tag = ARGV[7] or ''
  if tag ~= '' and not is_bool(tag) then bad_arg('invalid --tag-type: 0 (production) or 1 (test)') end

  -- conditions of --query
  local conds = {}
  for field, spec in pairs(json_arg(ARGV[8], '--query')) do
    local f = (field == '_id' or field == 'id') and 'id' or (field == 'name' and 'name' or nil)
    if not f then bad_arg('--query: only id (or _id) and name can be queried, not ' .. tostring(field)) end
    if type(spec) ~= 'table' then spec = { ['$eq'] = spec } end
    for op, v in pairs(spec) do
      if op ~= '$eq' and op ~= '$like' then bad_arg('--query: operator ' .. tostring(op) .. ' not supported here ($eq, $like)') end
      local s = scalar(v)
      if not s then bad_arg('--query: ' .. field .. ' ' .. op .. ' needs a string or a number') end
      conds[#conds + 1] = { field = f, op = op, value = s }
    end
  end
  local order = order_arg(ARGV[9], ORDER_FIELDS)

  local tasks = {}
  for _, id in ipairs(redis.call('ZRANGE', k_ota('tasks:' .. pid), 0, -1)) do
    local h = hgetall(k_task(id))
    local keep = h.id ~= nil and (not ttype or h.type == ttype) and (tag == '' or h.tag_type == tag)
    for _, c in ipairs(conds) do
      if not keep then break end
      local v = h[c.field] or ''
      if c.op == '$eq' then keep = v == c.value else keep = like(v, c.value) end
    end
    if keep then tasks[#tasks + 1] = h end
  end

  table.sort(tasks, function(a, b)
    for _, o in ipairs(order) do
      local f = ORDER_FIELDS[o.field]
      local c = compare(a[f] or '', b[f] or '')
      if c ~= 0 then
        if o.desc then return c > 0 end
        return c < 0
      end
    end
    if #order == 0 then
      local c = compare(a.created_at or '', b.created_at or '')
      if c ~= 0 then return c < 0 end
    end
    return tonumber(a.id) < tonumber(b.id)
  end)

  local items = {}
  for i = offset + 1, math.min(#tasks, offset + limit) do
    local h = tasks[i]
    items[#items + 1] = task_json(h, { surplus_count = task_surplus(h.id, h) })
  end
  if mode == 'list' then return jarr(items) end
  return jobj({ count = #tasks, list = { raw = jarr(items) } }, { 'count', 'list' })
end

return run(main)
