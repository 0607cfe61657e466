-- task start / stop (seed 002 op 3): ARGV[2] operator, ARGV[3] task id, ARGV[4] start|stop,
-- ARGV[5] (optional) the product the task must belong to.
--   start: 0 stopped -> 1 running; a production task only once a review approved it.
--   stop:  1 running -> 0 stopped.
-- Returns the task.
local STATUS_NAME = { ['0'] = 'stopped', ['1'] = 'running', ['2'] = 'waiting', ['3'] = 'in review' }

local function main()
  local operator, action = ARGV[2], ARGV[4]
  check(action == 'start' or action == 'stop', 'unknown action (start or stop)')
  local id, h = get_task(ARGV[3])
  check_task_product(id, h, ARGV[5])
  local st = h.status
  local from, to
  if action == 'start' then
    check(st ~= '1', 'task ' .. id .. ' is already running', 'conflict')
    if h.tag_type ~= '1' then
      check(st ~= '2', 'production task ' .. id .. ' is waiting for review: submit it (task submit) and have the reviewer approve it (task review --approve)', 'conflict')
      check(st ~= '3', 'production task ' .. id .. ' is in review: the reviewer must approve it (task review --approve)', 'conflict')
      check(h.approved == '1', 'production task ' .. id .. ' has not been approved by a review', 'conflict')
    end
    check(st == '0', 'task ' .. id .. ' cannot be started from status ' .. tostring(st), 'conflict')
    from, to = '0', '1'
  else
    check(st == '1', 'task ' .. id .. ' is not running (status ' .. tostring(st) .. ' ' .. (STATUS_NAME[st] or '?') .. ')', 'conflict')
    from, to = '1', '0'
  end
  local sec, usec = clock()
  redis.call('HSET', k_task(id), 'status', to)
  h.status = to
  oplog(id, operator, action, 'status ' .. from .. ' ' .. STATUS_NAME[from] .. ' -> ' .. to .. ' ' .. STATUS_NAME[to], sec, usec)
  changed('task', id)
  return task_json(h)
end

return run(main)
