-- HOLD as the engine does it, in one Lua call (atomic in Redis):
-- check the deal is open, split the units FIFO over the deal's lots (the list
-- order is the lots' acquisition order), record the hold with its expiry in a
-- sorted set, keep the hold row, and answer a retry of the same hold id with the
-- original receipt (the idempotency key; other parameters: CONFLICT).
-- KEYS[1] deal, KEYS[2] hold id ('' = generate one)
-- ARGV: investor, units (integer, 1e-8 units), price (integer, 1e-6), TTL seconds, partial (1/0)
-- Lua numbers are doubles: integers are exact below 2^53, so units are whole
-- multiples of 1e-8 held as integers (the engine's fixed point) and a deal's
-- supply must stay below 90,000,000 units.
local deal, id = KEYS[1], KEYS[2]
local investor, units, price, ttl, partial = ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4]), ARGV[5] == '1'
local function fmt(u)  -- 1e-8 units as the engine prints them: "100", "0.5"
  local whole, frac = math.floor(u / 100000000), u % 100000000
  if frac == 0 then return string.format('%d', whole) end
  return (string.format('%d.%08d', whole, frac):gsub('0+$', ''))
end
if not units or units <= 0 or units ~= math.floor(units) then return redis.error_reply('INVALID units must be a positive integer of 1e-8 units') end
if not ttl or ttl < 1 or ttl > 604800 then return redis.error_reply('INVALID ttl') end
local params = deal .. '|' .. investor .. '|' .. ARGV[2] .. '|' .. price .. '|' .. ARGV[4] .. '|' .. ARGV[5]
if id ~= '' then
  local prev = redis.call('HMGET', 'hold:' .. id, 'params', 'expires_at', 'lots')
  if prev[1] then
    if prev[1] ~= params then return redis.error_reply('CONFLICT hold id ' .. id .. ' was used with other parameters') end
    return {id, tonumber(prev[2]), prev[3]}
  end
end
local status = redis.call('HGET', deal .. ':deal', 'status')
if not status then return redis.error_reply('NOTFOUND deal ' .. deal) end
if status ~= 'open' then return redis.error_reply('CLOSED deal ' .. deal .. ' is ' .. status) end
local lots = redis.call('LRANGE', deal .. ':lots', 0, -1)
local rem = redis.call('HMGET', deal .. ':rem', unpack(lots))
local available = 0
for i = 1, #lots do available = available + tonumber(rem[i]) end
local want = units
if available < units then
  if partial and available > 0 then want = available
  else return redis.error_reply('INSUFFICIENT requested ' .. fmt(units) .. ', available ' .. fmt(available)) end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expires = now + ttl * 1000
if id == '' then id = 'h' .. deal .. '.' .. redis.call('HINCRBY', deal .. ':deal', 'seq', 1) end
local need, taken = want, {}
for i = 1, #lots do
  if need == 0 then break end
  local r = tonumber(rem[i])
  if r > 0 then
    local take = math.min(r, need)
    redis.call('HINCRBY', deal .. ':rem', lots[i], string.format('%d', -take))
    redis.call('HINCRBY', deal .. ':held', lots[i], string.format('%d', take))
    taken[#taken + 1] = lots[i] .. ':' .. string.format('%d', take)
    need = need - take
  end
end
local lotsText = table.concat(taken, ',')
redis.call('HSET', 'hold:' .. id, 'deal', deal, 'investor', investor, 'units', string.format('%d', want),
  'requested', ARGV[2], 'price', price, 'status', 'pending', 'expires_at', string.format('%d', expires),
  'created_at', string.format('%d', now), 'lots', lotsText, 'params', params)
redis.call('ZADD', deal .. ':exp', string.format('%d', expires), id)
redis.call('RPUSH', deal .. ':holds', id)
return {id, expires, lotsText}
