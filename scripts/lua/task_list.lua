-- task list (seed 002 op 2, GET form) / task query (op 7, POST form). ARGV[2] list|query,
-- ARGV[3] product id, ARGV[4] offset (default 0), ARGV[5] limit (default 10), ARGV[6] type filter
-- (empty: all), ARGV[7] tag_type filter (empty: all), ARGV[8] query JSON, ARGV[9] order JSON (query only).
--   query: {"id"|"_id"|"name": {"$eq": V} | {"$like": PATTERN} | V}; every condition must hold.
--   order: {"FIELD": "asc"|"desc", ...}, by the fields in the order written; then by id.
-- Default order: creation order. list returns a JSON array (the page); query returns
-- {"count": N, "list": [...]}, count being the number of matches before paging. Read only.
-- Cost: without filters only the page is read; a name condition or order reads the product's name index
-- (P ota:task_names:PID), or, for a name $eq or a $like with a text before its first '%', only the tasks
-- whose names start with it (P ota:task_names_ci:PID); other fields are read task by task. Whole tasks are
-- read for the page only; a page's tasks read the product's devices and their versions once.
local ORDER_FIELDS = {
  id = 'id', _id = 'id', name = 'name', description = 'description', status = 'status', type = 'type',
  identify = 'identify', from_version = 'from_version', target_version = 'target_version',
  upgrade_count = 'upgrade_count', task_type = 'task_type', tag_type = 'tag_type',
  create_time = 'create_time', created_at = 'created_at', audit_member_id = 'audit_member_id',
}

-- The first n of `list` in the order of `less`, a strict total order, as the first n of table.sort(list,
-- less) would be (the others are not sorted: a page of a long list costs about one comparison per task);
-- count: #list.
local function first_tasks(list, n, less)
  local count = #list
  if n * 8 >= count then
    table.sort(list, less)
    list.count = count
    return list
  end
  -- (a list that comes in about the reverse order is read from its end: most tasks then compare once)
  local first, last, step = 1, count, 1
  if less(list[count], list[1]) then first, last, step = count, 1, -1 end
  local best = {}  -- sorted, at most n
  for i = first, last, step do
    local t = list[i]
    local nb = #best
    if nb < n or less(t, best[nb]) then
      local lo, hi = 1, nb + 1
      while lo < hi do
        local mid = math.floor((lo + hi) / 2)
        if less(t, best[mid]) then hi = mid else lo = mid + 1 end
      end
      table.insert(best, lo, t)
      if #best > n then best[#best] = nil end
    end
  end
  best.count = count
  return best
end

local function main()
  local mode = ARGV[2]
  check(mode == 'list' or mode == 'query', 'unknown mode (list or query)')
  local pid = find_product(ARGV[3])
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
      conds[#conds + 1] = { field = f, op = op, value = s, match = op == '$like' and like_matcher(s) or nil }
    end
  end
  local order = order_arg(ARGV[9], ORDER_FIELDS)

  local index = k_ota('tasks:' .. pid)
  local names = k_task_names(pid)
  local tasks

  -- creation order: by created_at (the index's score), equal times by id as a number (the index sorts
  -- them as strings); sorts the runs of equal times in `list` (entries with .created_at and .n)
  local function fix_ties(list)
    local i = 1
    while i <= #list do
      local j = i
      while j < #list and list[j + 1].created_at == list[i].created_at do j = j + 1 end
      if j > i then
        local run = {}
        for k = i, j do run[#run + 1] = list[k] end
        table.sort(run, function(a, b) return a.n < b.n end)
        for k = i, j do list[k] = run[k - i + 1] end
      end
      i = j + 1
    end
  end

  local fields, seen = {}, { id = true, created_at = true }
  if ttype then fields[#fields + 1] = 'type' end
  if tag ~= '' then fields[#fields + 1] = 'tag_type' end
  for _, c in ipairs(conds) do
    if not seen[c.field] then seen[c.field] = true fields[#fields + 1] = c.field end
  end
  for _, o in ipairs(order) do
    local f = ORDER_FIELDS[o.field]
    if not seen[f] then seen[f] = true fields[#fields + 1] = f end
  end

  if #fields == 0 and #conds == 0 and #order == 0 then
    -- no filter: only the page is read from the index, widened to whole runs of equal times
    local total = redis.call('ZCARD', index)
    local page = {}
    if offset < total then
      local first = redis.call('ZRANGE', index, offset, offset + limit - 1, 'WITHSCORES')
      local lo, hi = first[2], first[#first]
      local before = redis.call('ZCOUNT', index, '-inf', '(' .. lo)
      local block = redis.call('ZRANGEBYSCORE', index, lo, hi, 'WITHSCORES')
      local list = {}
      for i = 1, #block, 2 do list[#list + 1] = { id = block[i], n = tonumber(block[i]), created_at = block[i + 1] } end
      fix_ties(list)
      for i = offset - before + 1, math.min(#list, offset - before + limit) do page[#page + 1] = list[i] end
    end
    tasks = { count = total }
    for i, t in ipairs(page) do tasks[offset + i] = t end
  else
    -- The fields the filters, conditions and order need, for every task of the product. When that is
    -- the name alone, the product's name index has it (one HGETALL, no table per task); creation times
    -- are then read for the matches only.
    local total = redis.call('ZCARD', index)
    local by_name = #fields == 1 and fields[1] == 'name' and redis.call('HLEN', names) == total
    tasks = {}
    if by_name then
      -- the tasks of (id, name, id, name, ...) that meet the conditions
      local function collect(flat)
        local list, nconds = {}, #conds
        for i = 1, #flat, 2 do
          local id, name = flat[i], flat[i + 1]
          local keep = true
          for j = 1, nconds do
            local c = conds[j]
            local v = c.field == 'id' and id or name
            if c.op == '$eq' then keep = v == c.value else keep = c.match(v) end
            if not keep then break end
          end
          if keep then list[#list + 1] = { id = id, n = tonumber(id), name = name } end
        end
        return list
      end
      -- A text every matching name starts with, lower-cased (an $eq's name, a $like's text before its first
      -- '%'): then only the tasks whose names start with it are read, from the case-insensitive index.
      local prefix
      for _, c in ipairs(conds) do
        if c.field == 'name' then
          local p = c.value:lower()
          if c.op == '$eq' then p = p .. '\0' else p = p:match('^([^%%]+)%%') end
          if p and (not prefix or #p > #prefix) then prefix = p end
        end
      end
      local ci = k_task_names_ci(pid)
      if prefix and redis.call('ZCARD', ci) == total then
        local flat = {}
        for _, e in ipairs(redis.call('ZRANGEBYLEX', ci, '[' .. prefix, lex_after(prefix))) do
          local id, name = parse_name_entry(e)
          if id then
            flat[#flat + 1] = id
            flat[#flat + 1] = name
          end
        end
        tasks = collect(flat)
        -- Ordered by names of which some are numbers and some not, which do not compare transitively, the
        -- tasks end in an order that depends on the order they were read in: read them as always.
        local by_names = false
        for _, o in ipairs(order) do by_names = by_names or ORDER_FIELDS[o.field] == 'name' end
        if by_names then
          local numbers = 0
          for _, t in ipairs(tasks) do
            if decimal(t.name) then numbers = numbers + 1 end
          end
          if numbers ~= 0 and numbers ~= #tasks then tasks = collect(redis.call('HGETALL', names)) end
        end
      else
        tasks = collect(redis.call('HGETALL', names))
      end
      local need_time = #order == 0
      for _, o in ipairs(order) do need_time = need_time or ORDER_FIELDS[o.field] == 'created_at' end
      if need_time then
        for _, t in ipairs(tasks) do
          t.created_at = redis.call('ZSCORE', index, t.id)
          t.t = tonumber(t.created_at)
        end
      end
      if #order == 0 then
        tasks = first_tasks(tasks, offset + limit, function(a, b)
          if a.t ~= b.t then return a.t < b.t end
          return a.n < b.n
        end)
      end
    else
      local rows = redis.call('ZRANGE', index, 0, -1, 'WITHSCORES')
      for i = 1, #rows, 2 do
        local t = { id = rows[i], n = tonumber(rows[i]), created_at = rows[i + 1] }
        if #fields > 0 then
          local v = redis.call('HMGET', k_task(t.id), unpack(fields))
          for j, f in ipairs(fields) do t[f] = v[j] or nil end
        end
        local keep = (not ttype or t.type == ttype) and (tag == '' or t.tag_type == tag)
        for _, c in ipairs(conds) do
          if not keep then break end
          local v = t[c.field] or ''
          if c.op == '$eq' then keep = v == c.value else keep = c.match(v) end
        end
        if keep then tasks[#tasks + 1] = t end
      end
      if #order == 0 then fix_ties(tasks) end
    end
    if #order > 0 then
      -- each task's sort keys (as sort_key makes them), and numbers[k]: how many tasks' k-th key is a number
      local nkeys, desc, numbers = #order, {}, {}
      for k, o in ipairs(order) do
        desc[k], numbers[k] = o.desc, 0
        local f = ORDER_FIELDS[o.field]
        for _, t in ipairs(tasks) do
          local ks = t[f] or ''
          local kn = decimal(ks)
          if k == 1 then
            t.key_s, t.key_n = ks, kn
          else
            t.keys = t.keys or {}
            t.keys[k] = { s = ks, n = kn }
          end
          if kn then numbers[k] = numbers[k] + 1 end
        end
      end
      -- compare_keys inlined: the comparator runs some 10 times per task
      local d1 = desc[1]
      local function less(a, b)
        if a.key_n and b.key_n then
          if a.key_n ~= b.key_n then return (a.key_n < b.key_n) ~= d1 end
        elseif a.key_s ~= b.key_s then
          return (a.key_s < b.key_s) ~= d1
        end
        if nkeys > 1 then
          local ak, bk = a.keys, b.keys
          for k = 2, nkeys do
            local x, y = ak[k], bk[k]
            if x.n and y.n then
              if x.n ~= y.n then return (x.n < y.n) ~= desc[k] end
            elseif x.s ~= y.s then
              return (x.s < y.s) ~= desc[k]
            end
          end
        end
        return a.n < b.n
      end
      -- When each key compares the same way for all tasks (all numbers, or no number), less is a total order
      -- and the page is its first offset + limit tasks: those are picked without sorting the others. (Numbers
      -- and words mixed do not compare transitively: then the sort decides, as it always did.)
      local uniform = true
      for k = 1, nkeys do uniform = uniform and (numbers[k] == 0 or numbers[k] == #tasks) end
      if uniform then tasks = first_tasks(tasks, offset + limit, less) else table.sort(tasks, less) end
    end
    tasks.count = tasks.count or #tasks
  end

  local items, memo = {}, {}
  for i = offset + 1, math.min(tasks.count, offset + limit) do
    local h = tasks[i] and hgetall(k_task(tasks[i].id)) or {}
    if h.id then items[#items + 1] = task_json(h, { surplus_count = task_surplus(h.id, h, nil, memo) }) end
  end
  if mode == 'list' then return jarr(items) end
  return jobj({ count = tasks.count, list = { raw = jarr(items) } }, { 'count', 'list' })
end

return run(main)
