-- task review (seed 002 op 12): ARGV[2] operator (the reviewer), ARGV[3] task id, ARGV[4] approve|reject.
-- A production task in status 3 (in review), reviewed by the member named by submit:
-- approve -> status 1 (running), approved 1; reject -> status 2 (waiting). The reviewer is cleared.
-- Returns the task.
local function main()
  local operator, verdict = ARGV[2], ARGV[4]
  check(is_member(operator), 'invalid operator: 1-64 of A-Z a-z 0-9 _ - . @')
  if verdict ~= 'approve' and verdict ~= 'reject' then bad_arg('give --approve or --reject') end
  local id, h = get_task(ARGV[3])
  check(h.tag_type == '0', 'task ' .. id .. ' is a test task: only production tasks are reviewed', 'conflict')
  check(h.status == '3', 'task ' .. id .. ' is not in review (status ' .. tostring(h.status) .. ')', 'conflict')
  check(operator == h.audit_member_id, "only the reviewer named by submit ('" .. tostring(h.audit_member_id) ..
    "') may review task " .. id .. ", not '" .. operator .. "'", 'forbidden')
  local sec, usec = clock()
  local set = { audit_member_id = '' }
  if verdict == 'approve' then
    set.status, set.approved = '1', '1'
  else
    set.status = '2'
  end
  hset(k_task(id), set)
  for k, v in pairs(set) do h[k] = v end
  oplog(id, operator, verdict, verdict == 'approve' and 'approved: status 3 in review -> 1 running' or
    'rejected: status 3 in review -> 2 waiting', sec, usec)
  changed('task', id)
  return task_json(h)
end

return run(main)
