-- Records a call's outcome: a success closes the breaker, enough failures in a row open it.
-- needs: now.lua
-- KEYS: breaker
-- ARGV: now, succeeded, failure_threshold, ttl_seconds
-- Returns the consecutive failures.
if ARGV[2] == '1' then
  redis.call('DEL', KEYS[1])
  return 0
end
local failures = tonumber(redis.call('HGET', KEYS[1], 'failures') or '0') + 1
local opened = redis.call('HGET', KEYS[1], 'opened_at')
if opened or failures >= tonumber(ARGV[3]) then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'failures', failures, 'opened_at', tostring(now))
else
  redis.call('HSET', KEYS[1], 'failures', failures)
end
redis.call('EXPIRE', KEYS[1], ARGV[4])
return failures
