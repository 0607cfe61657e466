-- account add: ARGV[2] name, ARGV[3] $7$ password hash, ARGV[4] superuser ('0'|'1'),
-- ARGV[5..] ACL rules ("read FILTER", "write FILTER", "readwrite FILTER").
local function main()
  local name, hash, superuser = ARGV[2], ARGV[3], ARGV[4]
  check(is_account_name(name), 'invalid account name: 1-64 of A-Z a-z 0-9 _ - . @')
  check(is_pw_hash(hash), 'invalid password hash: not a $7$ PBKDF2-SHA512 hash')
  check(is_bool(superuser), 'invalid superuser flag: 0 or 1')
  local rules = {}
  for i = 5, #ARGV do
    check(is_rule(ARGV[i]), 'invalid rule #' .. (i - 4) ..
      ": 'read|write|readwrite FILTER' with a valid MQTT topic filter")
    rules[#rules + 1] = ARGV[i]
  end
  check(not exists(k_account(name)) and redis.call('SISMEMBER', k_accounts(), name) == 0,
    "account '" .. name .. "' already exists")
  check(not exists(k_emu_uid(name)), "account name '" .. name .. "' is the uid of an EMU device")

  local h = {
    password_hash = hash,
    superuser = superuser,
    rules = jstr_array(rules),
    created_at = now(),
  }
  hset(k_account(name), h)
  redis.call('SADD', k_accounts(), name)
  changed('account', name)
  return account_json(name, h)
end

return run(main)
