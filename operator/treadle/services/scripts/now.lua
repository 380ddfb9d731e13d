-- A fragment, not a script: `now` from ARGV[1], or the Redis server's clock when it is ''.
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
else
  now = tonumber(ARGV[1])
end
