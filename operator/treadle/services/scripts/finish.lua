-- Records an attempt's outcome, publishes its result once, and acknowledges its message.
-- KEYS: tasks, done, results
-- ARGV: group, message_id, done_field, ttl_seconds, key, uid, result
-- An empty message_id publishes without acknowledging (an attempt that ran in a Job of its own
-- was never a message on the tasks stream).
-- Returns 1 when the result was published, 0 when its outcome was recorded before (a duplicate).
-- The record of outcomes expires (renewed by each outcome): a worker finishing an attempt of a
-- workflow already deleted leaves no key behind for ever.
local fresh = redis.call('HSETNX', KEYS[2], ARGV[3], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[4])
if fresh == 1 then
  redis.call('XADD', KEYS[3], '*', 'key', ARGV[5], 'uid', ARGV[6], 'result', ARGV[7])
end
if ARGV[2] ~= '' then
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
  redis.call('XDEL', KEYS[1], ARGV[2])
end
return fresh
