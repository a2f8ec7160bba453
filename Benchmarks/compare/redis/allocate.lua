-- ALLOCATE as the engine does it: a pending, unexpired hold becomes an
-- allocation in pending_review; its units move from held to allocated lot by
-- lot; its expiry entry goes. A repeat for the same hold answers the same id.
-- KEYS[1] hold id, KEYS[2] allocation id ('' = generate one)
local hid, aid = KEYS[1], KEYS[2]
local h = redis.call('HMGET', 'hold:' .. hid, 'deal', 'investor', 'units', 'price', 'status', 'expires_at', 'lots', 'allocation')
if not h[1] then return redis.error_reply('NOTFOUND hold ' .. hid) end
if h[5] == 'approved' then
  if aid == '' or aid == h[8] then return h[8] end
  return redis.error_reply('CONFLICT hold ' .. hid .. ' is allocated as ' .. h[8])
end
if h[5] ~= 'pending' then return redis.error_reply('CONFLICT hold ' .. hid .. ' is ' .. h[5]) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if now >= tonumber(h[6]) then return redis.error_reply('EXPIRED hold ' .. hid) end
local deal = h[1]
if aid == '' then aid = 'a' .. deal .. '.' .. redis.call('HINCRBY', deal .. ':deal', 'aseq', 1)
elseif redis.call('EXISTS', 'alloc:' .. aid) == 1 then return redis.error_reply('CONFLICT allocation id ' .. aid .. ' is used') end
for lot, u in string.gmatch(h[7], '([^,:]+):(%d+)') do
  redis.call('HINCRBY', deal .. ':held', lot, '-' .. u)
  redis.call('HINCRBY', deal .. ':alloc', lot, u)
end
redis.call('HSET', 'alloc:' .. aid, 'deal', deal, 'hold', hid, 'investor', h[2], 'units', h[3], 'unit_price', h[4],
  'status', 'pending_review', 'created_at', string.format('%d', now), 'lots', h[7])
redis.call('HSET', 'hold:' .. hid, 'status', 'approved', 'allocation', aid)
redis.call('ZREM', deal .. ':exp', hid)
return aid
