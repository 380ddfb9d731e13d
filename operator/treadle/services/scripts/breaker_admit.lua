-- May a call go to the breaker's target now?  Counts a half-open trial when it lets one through.
-- needs: now.lua
-- KEYS: breaker
-- ARGV: now, open_seconds, ttl_seconds
-- Returns 1: the call may go, 0: fail fast.
local opened = redis.call('HGET', KEYS[1], 'opened_at')
if not opened then return 1 end
local open = tonumber(ARGV[2])
if now - tonumber(opened) < open then return 0 end
local trial = redis.call('HGET', KEYS[1], 'trial_started_at')
if trial and now - tonumber(trial) < open then return 0 end
redis.call('HSET', KEYS[1], 'trial_started_at', tostring(now))
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
