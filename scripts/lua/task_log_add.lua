-- task log add (seed 002 op 8): ARGV[2] operator, ARGV[3] task id, ARGV[4] device id, ARGV[5] status
-- (1 sent, 2 done; default 1), ARGV[6] device MAC, ARGV[7] device SN (both may be empty).
-- Appends an OTA log entry (P ota:logs, numbered by P ota:log_seq) and returns it.
local function main()
  check(is_member(ARGV[2]), 'invalid operator: 1-64 of A-Z a-z 0-9 _ - . @')
  local id, h = get_task(ARGV[3])
  local did = find_device(h.product_id, ARGV[4] or '')
  local status = (ARGV[5] or '') == '' and '1' or ARGV[5]
  if status ~= '1' and status ~= '2' then bad_arg('invalid --status: 1 (sent) or 2 (done)') end
  local mac, sn = ARGV[6] or '', ARGV[7] or ''
  if mac ~= '' and not mac:match('^[%x:%-]+$') then bad_arg('invalid --mac: hex digits, : and -') end
  if #mac > 64 then bad_arg('invalid --mac: at most 64 characters') end
  if sn ~= '' and (#sn > 64 or not sn:match('^[!-~]+$')) then bad_arg('invalid --sn: 1-64 printable ASCII characters, no spaces') end
  local sec, usec = clock()
  return ota_log(h.product_id, id, did, tonumber(status), mac, sn, sec, usec)
end

return run(main)
