-- Claims one message whose worker went silent (only if still idle) and either re-publishes it
-- with one more redelivery, or, past the limit, dead-letters it with the reason and publishes
-- the failed result the caller made of it (so the engine retries or dead-letters the task).
-- KEYS: tasks, dead_letters, results
-- ARGV: group, consumer, message_id, min_idle_ms, max_redeliveries, reason, key, uid, result
-- Returns 0: nothing to do (acknowledged meanwhile, or no longer idle); 1: re-published;
-- 2: dead-lettered.
local claimed = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[4], ARGV[3])
if #claimed == 0 or not claimed[1] then return 0 end
local fields = claimed[1][2]
local redeliveries = 0
for i = 1, #fields, 2 do
  if fields[i] == 'redeliveries' then redeliveries = tonumber(fields[i + 1]) end
end
local outcome
if redeliveries + 1 > tonumber(ARGV[5]) then
  local entry = {}
  for i = 1, #fields do entry[#entry + 1] = fields[i] end
  entry[#entry + 1] = 'reason'
  entry[#entry + 1] = ARGV[6]
  redis.call('XADD', KEYS[2], '*', unpack(entry))
  redis.call('XADD', KEYS[3], '*', 'key', ARGV[7], 'uid', ARGV[8], 'result', ARGV[9])
  outcome = 2
else
  local entry = {}
  for i = 1, #fields, 2 do
    entry[#entry + 1] = fields[i]
    if fields[i] == 'redeliveries' then
      entry[#entry + 1] = tostring(redeliveries + 1)
    else
      entry[#entry + 1] = fields[i + 1]
    end
  end
  redis.call('XADD', KEYS[1], '*', unpack(entry))
  outcome = 1
end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
redis.call('XDEL', KEYS[1], ARGV[3])
return outcome
