-- task versions (seed 002 op 16): ARGV[2] task id. The versions of the task's module among the
-- devices in its scope: {"total": N, "versions": [{"version": V, "count": N, "percent": P}]},
-- most common first (then by version); a device that never reported one counts under version null.
-- percent = 100 * count / total, two decimals at most. Read only.
local function main()
  local _, h = get_task(ARGV[2])
  local counts, total = {}, 0
  local NONE = '\0'
  for _, did in ipairs(task_scope(h)) do
    local v = redis.call('HGET', k_version(h.product_id, did), h.identify)
    if not v then v = NONE end
    counts[v] = (counts[v] or 0) + 1
    total = total + 1
  end
  local rows = {}
  for v, n in pairs(counts) do rows[#rows + 1] = { v = v, n = n } end
  table.sort(rows, function(a, b)
    if a.n ~= b.n then return a.n > b.n end
    if (a.v == NONE) ~= (b.v == NONE) then return b.v == NONE end
    return a.v < b.v
  end)
  local items = {}
  for _, r in ipairs(rows) do
    local p = string.format('%.2f', r.n * 100 / total):gsub('0+$', ''):gsub('%.$', '')
    items[#items + 1] = jobj({ version = r.v == NONE and NULL or r.v, count = r.n, percent = { raw = p } },
      { 'version', 'count', 'percent' })
  end
  return jobj({ total = total, versions = { raw = jarr(items) } }, { 'total', 'versions' })
end

return run(main)
