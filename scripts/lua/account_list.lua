-- account list: every account (without password hashes), sorted by name.
local function main()
  local items = {}
  for _, name in ipairs(sorted_members(k_accounts())) do
    if exists(k_account(name)) then
      items[#items + 1] = account_json(name, hgetall(k_account(name)))
    end
  end
  return jarr(items)
end

return run(main)
