-- task get (seed 002 op 14) / task show: ARGV[2] task id, ARGV[3] '1' for show: adds
-- devices_by_state, the number of devices in each progress state. Read only.
local function main()
  local id, h = get_task(ARGV[2])
  local states = task_states(id)
  local extra = { surplus_count = task_surplus(id, h, states) }
  if ARGV[3] == '1' then
    local counts = {}
    for _, s in ipairs(PROGRESS_STATES) do counts[s] = 0 end
    for _, s in pairs(states) do
      if counts[s] and s ~= 'pending' then counts[s] = counts[s] + 1 end
    end
    -- pending: devices in scope without a progress entry whose version for the module is from_version;
    -- for listed devices (category 1) also those that never reported a version for it
    for _, did in ipairs(task_scope(h)) do
      if not states[did] then
        local v = redis.call('HGET', k_version(h.product_id, did), h.identify)
        if v == h.from_version or (h.scope_category == '1' and not v) then counts.pending = counts.pending + 1 end
      end
    end
    extra.devices_by_state = { raw = jobj(counts, PROGRESS_STATES) }
  end
  return task_json(h, extra)
end

return run(main)
