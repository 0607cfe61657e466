-- task submit (seed 002 op 11): ARGV[2] operator, ARGV[3] task id, ARGV[4] reviewer. A production
-- task in status 2 (waiting) goes to status 3 (in review) with audit_member_id = the reviewer.
-- Returns the task.
local function main()
  local operator, reviewer = ARGV[2], ARGV[4]
  check(is_member(operator), 'invalid operator: 1-64 of A-Z a-z 0-9 _ - . @')
  local id, h = get_task(ARGV[3])
  if not is_member(reviewer) then bad_arg('invalid --reviewer: 1-64 of A-Z a-z 0-9 _ - . @') end
  check(h.tag_type == '0', 'task ' .. id .. ' is a test task: only production tasks are reviewed (task to-production)', 'conflict')
  check(h.status == '2', 'task ' .. id .. ' is not waiting (status ' .. tostring(h.status) .. '): only a waiting task (status 2) can be submitted', 'conflict')
  local sec, usec = clock()
  redis.call('HSET', k_task(id), 'status', '3', 'audit_member_id', reviewer)
  h.status, h.audit_member_id = '3', reviewer
  oplog(id, operator, 'submit', 'submitted for review by ' .. reviewer .. ', status 2 waiting -> 3 in review', sec, usec)
  changed('task', id)
  return task_json(h)
end

return run(main)
