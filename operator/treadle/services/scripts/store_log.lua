-- Stores one attempt's log within the bytes its workflow's logs may hold on this pool; past
-- them, the note that says so is stored instead.  The copy kept while it ran goes.
-- KEYS: log, live, budget, index
-- ARGV: text, limit, ttl_seconds, over_note
-- Returns the bytes the workflow's logs hold now.
local size = string.len(ARGV[1])
local used = redis.call('INCRBY', KEYS[3], size)
local text = ARGV[1]
if used > tonumber(ARGV[2]) then
  used = redis.call('DECRBY', KEYS[3], size)
  text = ARGV[4]
end
redis.call('SET', KEYS[1], text, 'EX', ARGV[3])
redis.call('DEL', KEYS[2])
redis.call('SADD', KEYS[4], KEYS[1])
redis.call('EXPIRE', KEYS[4], ARGV[3])
redis.call('EXPIRE', KEYS[3], ARGV[3])
return used
