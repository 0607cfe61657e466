-- task delete (seed 002 op 4): ARGV[2] operator, ARGV[3] task id, ARGV[4] (optional) the product the
-- task must belong to. Removes the task hash, its entries in
-- the task indexes, its unique key, its progress hash, pushed set and operation log; one change entry.
-- The OTA logs (P ota:logs) are history and stay.
local function main()
  check(is_member(ARGV[2]), 'invalid operator: 1-64 of A-Z a-z 0-9 _ - . @')
  local id, h = get_task(ARGV[3])
  check_task_product(id, h, ARGV[4])
  remove_task(id, h)
  return jobj({ deleted = id })
end

return run(main)
