-- The oversell check's recount: reads ARGV[2] hold rows of deal KEYS[1] from
-- index ARGV[1] and sums their units per lot by status, from the rows alone
-- (not the counters the reserve script keeps). Reply: flat list
-- lot, held (pending holds), allocated (allocated holds), ...
local ids = redis.call('LRANGE', KEYS[1] .. ':holds', tonumber(ARGV[1]), tonumber(ARGV[1]) + tonumber(ARGV[2]) - 1)
local held, alloc, order = {}, {}, {}
for _, id in ipairs(ids) do
  local h = redis.call('HMGET', 'hold:' .. id, 'status', 'lots')
  for lot, u in string.gmatch(h[2] or '', '([^,:]+):(%d+)') do
    if not held[lot] then held[lot] = 0; alloc[lot] = 0; order[#order + 1] = lot end
    if h[1] == 'pending' then held[lot] = held[lot] + tonumber(u)
    elseif h[1] == 'approved' then alloc[lot] = alloc[lot] + tonumber(u) end
  end
end
local out = {}
for _, lot in ipairs(order) do
  out[#out + 1] = lot; out[#out + 1] = string.format('%d', held[lot]); out[#out + 1] = string.format('%d', alloc[lot])
end
return out
