-- Records an attempt's outcome, publishes its result once, and acknowledges its message.
-- KEYS: tasks, done, results
-- ARGV: group, message_id, done_field, key, uid, result
-- Returns 1 when the result was published, 0 when its outcome was recorded before (a duplicate).
local fresh = redis.call('HSETNX', KEYS[2], ARGV[3], ARGV[2])
if fresh == 1 then
  redis.call('XADD', KEYS[3], '*', 'key', ARGV[4], 'uid', ARGV[5], 'result', ARGV[6])
end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
return fresh
