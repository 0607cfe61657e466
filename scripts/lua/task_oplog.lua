-- task oplog (seed 002 op 15): ARGV[2] task id, ARGV[3] offset (default 0), ARGV[4] limit (default 10).
-- The task's operation log, oldest first: {"count": N, "list": [{"id", "content", "opt_id",
-- "opt_name", "opt_account", "create_date", "action"}]} (id = position in the log, from 1; the
-- operator's name fills opt_id, opt_name and opt_account). Read only.
local function main()
  local id = get_task(ARGV[2])
  local offset, limit = paging(ARGV[3], ARGV[4])
  local key = k_ota('oplog:' .. id)
  local count = redis.call('LLEN', key)
  local items = {}
  for i, js in ipairs(redis.call('LRANGE', key, offset, offset + limit - 1)) do
    local ok, e = pcall(cjson.decode, js)
    if not ok or type(e) ~= 'table' then e = {} end
    local op = scalar(e.operator) or ''
    items[#items + 1] = jobj({ id = offset + i, content = scalar(e.detail) or '', opt_id = op, opt_name = op,
      opt_account = op, create_date = scalar(e.time) or '', action = scalar(e.action) or '' },
      { 'id', 'content', 'opt_id', 'opt_name', 'opt_account', 'create_date', 'action' })
  end
  return jobj({ count = count, list = { raw = jarr(items) } }, { 'count', 'list' })
end

return run(main)
