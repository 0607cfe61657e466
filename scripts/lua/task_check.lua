-- task check (seed 002 op 5): ARGV[2] product id, ARGV[3] device id, ARGV[4] type, ARGV[5] the
-- device's current version, ARGV[6] identify (empty: default).
-- The running task of the product for that type, identify and from_version = current version (that
-- combination is unique per product, so there is at most one)
-- whose scope holds the device (test tasks: only their listed devices) and whose gray release
-- (FNV-1a of the device id mod 100 < gray_percent) takes it in. Returns the task or {}. Read only.
local function main()
  local pid, did = ARGV[2], ARGV[3]
  -- the product and the device as named, in one call (the devices' requests name them so); else as the CLI
  -- finds them, with its refusals
  if not (is_ref(pid) and is_ref(did) and redis.call('EXISTS', k_product(pid), k_device(pid, did)) == 2) then
    pid = find_product(pid)
    did = find_device(pid, did)
  end
  local ttype = task_type_arg(ARGV[4] or '')
  if not ttype then bad_arg('invalid --type: wifi, mcu or sub-device (or 1, 2, 3)') end
  local cur = ARGV[5]
  if not is_version(cur) then bad_arg('invalid --current-version: 1-64 printable ASCII characters, no spaces') end
  local identify = identify_arg(ttype, ARGV[6])
  -- type + identify + from version is unique per product: at most one task can apply
  local id = redis.call('GET', k_unique(pid, ttype, identify, cur))
  if not id then return '{}' end
  local h, flat = hgetall_flat(k_task(id))
  local best
  if h.id and h.status == '1' and h.type == ttype and h.identify == identify and h.from_version == cur
    and fnv1a(did) % 100 < (tonumber(h.gray_percent) or 100) then
    local in_scope = h.scope_category ~= '1'
    if not in_scope then
      for _, d in ipairs(decode_list(h.device_list)) do
        if d == did then in_scope = true break end
      end
    end
    if in_scope then best = h end
  end
  if not best then return '{}' end
  return task_json_memo(flat, best)
end

return run(main)
