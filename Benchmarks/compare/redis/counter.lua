-- The lower bound (today's redis-side-by-side.sh): one counter, check and
-- decrement, record the hold as a hash. No lots, no FIFO split, no expiry
-- index, no idempotency key: less work than a hold.
-- KEYS[1] = remaining counter; ARGV = investor, units, price.
local r = tonumber(redis.call('GET', KEYS[1])); local u = tonumber(ARGV[2])
if r < u then return redis.error_reply('INSUFFICIENT') end
redis.call('DECRBY', KEYS[1], u)
local id = redis.call('INCR', 'hold:seq')
redis.call('HSET', 'hold:' .. id, 'investor', ARGV[1], 'units', ARGV[2], 'price', ARGV[3], 'status', 'pending')
return id
