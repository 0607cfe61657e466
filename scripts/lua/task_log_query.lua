-- task log query (seed 002 op 9): ARGV[2] offset (default 0), ARGV[3] limit (default 10), ARGV[4] field
-- filter (comma-separated; empty: every field), ARGV[5] query JSON, ARGV[6] order JSON.
--   query: {"FIELD": {"$eq"|"$lt"|"$lte"|"$gt"|"$gte"|"$like": V, "$in": [V, ...]} | V}, every
--          condition must hold. Values compare as numbers when both are decimal numbers, else as
--          strings; $like: '%' matches any run of characters, a pattern without '%' matches as a
--          substring, ASCII case-insensitive.
--   order: {"FIELD": "asc"|"desc", ...} by the fields in the order written, then by id. Default: by id.
-- Returns {"count": N, "list": [...]}, count being the number of matches before paging. Read only.
local FIELDS = { 'id', 'product_id', 'task_id', 'device_id', 'device_mac', 'device_sn', 'status', 'execute_time' }
local KNOWN = {}
for _, f in ipairs(FIELDS) do KNOWN[f] = true end
local OPS = { ['$eq'] = true, ['$in'] = true, ['$lt'] = true, ['$lte'] = true, ['$gt'] = true, ['$gte'] = true, ['$like'] = true }

local function main()
  local offset, limit = paging(ARGV[2], ARGV[3])
  local filter = {}
  if (ARGV[4] or '') ~= '' then
    local seen = {}
    for f in (ARGV[4] .. ','):gmatch('([^,]*),') do
      if not KNOWN[f] then bad_arg('--filter: unknown field ' .. f .. ' (' .. table.concat(FIELDS, ', ') .. ')') end
      if not seen[f] then
        seen[f] = true
        filter[#filter + 1] = f
      end
    end
  end

  local conds = {}
  for field, spec in pairs(json_arg(ARGV[5], '--query')) do
    if not KNOWN[field] then bad_arg('--query: unknown field ' .. tostring(field) .. ' (' .. table.concat(FIELDS, ', ') .. ')') end
    if type(spec) ~= 'table' or (#spec > 0) then spec = { ['$eq'] = spec } end
    for op, v in pairs(spec) do
      if not OPS[op] then bad_arg('--query: unknown operator ' .. tostring(op) .. ' ($eq $in $lt $lte $gt $gte $like)') end
      local value
      if op == '$in' then
        if type(v) ~= 'table' then bad_arg('--query: ' .. field .. ' $in needs an array') end
        value = {}
        for _, x in ipairs(v) do
          local s = scalar(x)
          if not s then bad_arg('--query: ' .. field .. ' $in needs strings or numbers') end
          value[#value + 1] = s
        end
      else
        value = scalar(v)
        if not value then bad_arg('--query: ' .. field .. ' ' .. op .. ' needs a string or a number') end
      end
      conds[#conds + 1] = { field = field, op = op, value = value }
    end
  end
  local allowed = {}
  for _, f in ipairs(FIELDS) do allowed[f] = f end
  local order = order_arg(ARGV[6], allowed)

  local matched = {}
  for _, js in ipairs(redis.call('LRANGE', k_ota('logs'), 0, -1)) do
    local ok, e = pcall(cjson.decode, js)
    if ok and type(e) == 'table' then
      local keep = true
      for _, c in ipairs(conds) do
        local v = scalar(e[c.field]) or ''
        local op = c.op
        if op == '$eq' then keep = v == c.value
        elseif op == '$in' then
          keep = false
          for _, x in ipairs(c.value) do
            if v == x then keep = true break end
          end
        elseif op == '$like' then keep = like(v, c.value)
        else
          local r = compare(v, c.value)
          keep = (op == '$lt' and r < 0) or (op == '$lte' and r <= 0) or (op == '$gt' and r > 0) or (op == '$gte' and r >= 0)
        end
        if not keep then break end
      end
      if keep then matched[#matched + 1] = e end
    end
  end

  table.sort(matched, function(a, b)
    for _, o in ipairs(order) do
      local c = compare(scalar(a[o.field]) or '', scalar(b[o.field]) or '')
      if c ~= 0 then
        if o.desc then return c > 0 end
        return c < 0
      end
    end
    return (tonumber(a.id) or 0) < (tonumber(b.id) or 0)
  end)

  local items = {}
  for i = offset + 1, math.min(#matched, offset + limit) do
    local e, t = matched[i], {}
    for _, f in ipairs(#filter > 0 and filter or FIELDS) do
      local v = e[f]
      if type(v) == 'string' or type(v) == 'number' then t[f] = v end
    end
    items[#items + 1] = jobj(t, #filter > 0 and filter or FIELDS)
  end
  return jobj({ count = #matched, list = { raw = jarr(items) } }, { 'count', 'list' })
end

return run(main)
