-- Turn a room big or small, under its fan-out lock, and read its members in the same step,
-- so that a join is either in the answer or sees the new mode (docs/design.md, "Turning
-- big or small").
-- KEYS[1] the room's mode hash, KEYS[2] its member set, KEYS[3] its stream.
-- ARGV[1] "big" or "small"; ARGV[2], for "small", the member count it needs to be under.
-- Returns {position, members}: the newest id of the room's stream ("0-0" when empty), which
-- every message sent before the change is at or before; or {} when a room to turn small is
-- not big, or no longer under ARGV[2] (another send changed it first: nothing to do).
if ARGV[1] == 'small' and (redis.call('HGET', KEYS[1], 'big') ~= '1' or redis.call('SCARD', KEYS[2]) >= tonumber(ARGV[2])) then
  return {}
end
local top = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)
local id = '0-0'
if #top > 0 then
  id = top[1][1]
end
if ARGV[1] == 'big' then
  redis.call('HSET', KEYS[1], 'big', '1', 'from', id)
else
  redis.call('HSET', KEYS[1], 'big', '0', 'until', id)
end
return {id, redis.call('SMEMBERS', KEYS[2])}
