-- Acknowledge and delete entries of a shard that were delivered (or dropped unsent), and
-- release the bytes they were counted for. An entry is released only by the call that
-- deletes it, so repeating the call (a lost answer, a second node that claimed the same
-- entries) releases nothing twice.
-- KEYS[1] shard stream, KEYS[2] its bytes counter, KEYS[3] its users' bytes hash
-- ARGV[1] consumer group, then for each entry: its id, its user and its cost ('0' for an
-- entry queued without them)
-- Returns the bytes released.
local ids = {}
local freed = 0
for i = 2, #ARGV, 3 do
  ids[#ids + 1] = ARGV[i]
  local cost = tonumber(ARGV[i + 2]) or 0
  if redis.call('XDEL', KEYS[1], ARGV[i]) == 1 and cost > 0 then
    freed = freed + cost
    if redis.call('HINCRBY', KEYS[3], ARGV[i + 1], -cost) <= 0 then
      redis.call('HDEL', KEYS[3], ARGV[i + 1])
    end
  end
end
if #ids > 0 then
  redis.call('XACK', KEYS[1], ARGV[1], unpack(ids))
end
if redis.call('XLEN', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[2], KEYS[3]) -- nothing queued: also heals any drift
elseif freed > 0 and redis.call('DECRBY', KEYS[2], freed) <= 0 then
  redis.call('DEL', KEYS[2])
end
return freed
