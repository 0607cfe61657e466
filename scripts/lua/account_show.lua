-- account show: ARGV[2] name. The account without its password hash.
local function main()
  local name = ARGV[2]
  check(is_account_name(name), 'invalid account name: 1-64 of A-Z a-z 0-9 _ - . @')
  check(exists(k_account(name)), "unknown account '" .. name .. "'")
  return account_json(name, hgetall(k_account(name)))
end

return run(main)
