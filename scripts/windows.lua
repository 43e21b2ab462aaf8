-- tidemark windows writer: applies a micro-batch of events to ONE bucket atomically.
-- A stream processor (Storm, Flink, a Kinesis consumer) loads this once (SCRIPT LOAD) and
-- calls EVALSHA per bucket and micro-batch. The contract is described in docs/windows.md.
--
-- KEYS[1]           the bucket hash, e.g. tidemark:w:{events:1732600000}
-- ARGV[1]           TTL of the bucket in seconds (the windows retention)
-- ARGV[2]           number of measures M
-- ARGV[3 .. 2+M]    measure specs, in order: "count", "sum:<col>", "min:<col>", "max:<col>"
-- then, per event:  the dimension field (dimension values joined by \31, NULL as \0),
--                   followed by M values: integers in the column's smallest unit as decimal
--                   text ("" for NULL; ignored for "count")
-- returns the number of events applied
local key = KEYS[1]
local ttl = tonumber(ARGV[1])
local m = tonumber(ARGV[2])
if not ttl or not m or m < 1 then
  return redis.error_reply('windows.lua: ARGV[1] must be the TTL and ARGV[2] the measure count')
end
if (#ARGV - 2 - m) % (m + 1) ~= 0 then
  return redis.error_reply('windows.lua: each event needs a dimension field and ' .. m .. ' values')
end
local specs = {}
for j = 1, m do
  specs[j] = ARGV[2 + j]
end
local i = 3 + m
local n = 0
while i <= #ARGV do
  local dims = ARGV[i]
  for j = 1, m do
    local spec = specs[j]
    local v = ARGV[i + j]
    local field = spec .. '|' .. dims
    local kind = string.sub(spec, 1, 3)
    if spec == 'count' then
      redis.call('HINCRBY', key, field, 1)
    elseif v ~= '' then
      if kind == 'sum' then
        redis.call('HINCRBY', key, field, v)
        redis.call('HINCRBY', key, 'nn:' .. string.sub(spec, 5) .. '|' .. dims, 1)
      elseif kind == 'min' or kind == 'max' then
        local cur = redis.call('HGET', key, field)
        local x = tonumber(v)
        if not x then
          return redis.error_reply('windows.lua: ' .. spec .. ' value is not a number: ' .. v)
        end
        if (not cur) or (kind == 'min' and x < tonumber(cur)) or (kind == 'max' and x > tonumber(cur)) then
          redis.call('HSET', key, field, v)
        end
      else
        return redis.error_reply('windows.lua: unknown measure ' .. spec)
      end
    end
  end
  i = i + 1 + m
  n = n + 1
end
redis.call('EXPIRE', key, ttl)
return n
