-- APPROVE as the engine does it: pending_review -> approved, and the units and
-- their cost go to the investor's position in the deal (cost in cents, rounded
-- half away from zero once per allocation).
-- KEYS[1] allocation id
local aid = KEYS[1]
local a = redis.call('HMGET', 'alloc:' .. aid, 'deal', 'investor', 'units', 'unit_price', 'status')
if not a[1] then return redis.error_reply('NOTFOUND allocation ' .. aid) end
if a[5] == 'approved' then return redis.status_reply('OK') end
if a[5] ~= 'pending_review' then return redis.error_reply('CONFLICT allocation ' .. aid .. ' is ' .. a[5]) end
local t = redis.call('TIME')
redis.call('HSET', 'alloc:' .. aid, 'status', 'approved', 'approved_at', string.format('%d', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)))
local pos = 'pos:' .. a[2] .. ':' .. a[1]
redis.call('HINCRBY', pos, 'units', a[3])
-- units (1e-8) x price (1e-6) = 1e-14; cents = that / 1e12
redis.call('HINCRBY', pos, 'cost_cents', string.format('%d', math.floor(tonumber(a[3]) * tonumber(a[4]) / 1e12 + 0.5)))
return redis.status_reply('OK')
