-- Takes a token from the target's bucket.
-- needs: now.lua
-- KEYS: bucket
-- ARGV: now, per_second, burst, ttl_seconds
-- Returns the seconds to wait (as a string); "0": go.
local rate = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local tokens = tonumber(redis.call('HGET', KEYS[1], 'tokens') or burst)
local updated = tonumber(redis.call('HGET', KEYS[1], 'updated_at') or now)
tokens = math.min(burst, tokens + math.max(0, now - updated) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'updated_at', tostring(now))
redis.call('EXPIRE', KEYS[1], ARGV[4])
return tostring(wait)
