-- account delete: ARGV[2] name.
local function main()
  local name = ARGV[2]
  check(is_account_name(name), 'invalid account name: 1-64 of A-Z a-z 0-9 _ - . @')
  check(exists(k_account(name)), "unknown account '" .. name .. "'")
  redis.call('DEL', k_account(name))
  redis.call('SREM', k_accounts(), name)
  changed('account', name)
  return jobj({ deleted = name })
end

return run(main)
