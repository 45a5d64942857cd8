-- Forget every connection a dead node held for some users of one shard, and queue
-- user.offline for each of them left with no connection anywhere. Each user is handled by
-- exactly one call: it is removed from the node's set in the same step, so repeating the
-- call, or two nodes running it at once, queues no second event.
-- KEYS[1] shard stream, KEYS[2] the node's user set, KEYS[3] the shard's node set,
-- KEYS[3+i] the presence hash of the i-th user
-- ARGV[1] bound of the stream ("0": do not queue events), ARGV[2] node,
-- ARGV[1+2i] the i-th user, ARGV[2+2i] its user.offline JSON
-- Returns {users gone offline, entries trimmed, users of the node left in this shard}.
local prefix = ARGV[2] .. '/'
local offline, trimmed = 0, 0
for i = 1, #KEYS - 3 do
  local hash = KEYS[3 + i]
  if redis.call('SREM', KEYS[2], ARGV[1 + 2 * i]) == 1 then
    local fields = redis.call('HKEYS', hash)
    local removed = 0
    for _, f in ipairs(fields) do
      if string.sub(f, 1, #prefix) == prefix then
        redis.call('HDEL', hash, f)
        removed = removed + 1
      end
    end
    if removed > 0 and removed == #fields then
      offline = offline + 1
      if ARGV[1] ~= '0' then
        trimmed = trimmed + emit(KEYS[1], ARGV[1], ARGV[2 + 2 * i])
      end
    end
  end
end
local left = redis.call('SCARD', KEYS[2])
if left == 0 then
  redis.call('SREM', KEYS[3], ARGV[2])
end
return {offline, trimmed, left}
