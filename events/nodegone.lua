-- Forget every connection a dead node held for some users of one shard, and queue
-- user.offline for each of them left with no connection anywhere. Each user is handled by
-- exactly one call: it is removed from the node's set in the same step, so repeating the
-- call, or two nodes running it at once, queues no second event.
-- KEYS[1] shard stream, KEYS[2] its bytes counter, KEYS[3] its users' bytes hash,
-- KEYS[4] the node's user set, KEYS[5] the shard's node set,
-- KEYS[5+i] the presence hash of the i-th user
-- ARGV[1..4] limits (lib.lua; ARGV[1] '0': do not queue events), ARGV[5] node,
-- ARGV[4+2i] the i-th user, ARGV[5+2i] its user.offline JSON
-- Returns {users gone offline, events that did not fit in the queue, users of the node
-- left in this shard}.
local lim = limits(ARGV)
local prefix = ARGV[5] .. '/'
local offline, refused = 0, 0
for i = 1, #KEYS - 5 do
  local hash = KEYS[5 + i]
  local user = ARGV[4 + 2 * i]
  if redis.call('SREM', KEYS[4], user) == 1 then
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
      refused = refused + transitioned(KEYS, lim, user, ARGV[5 + 2 * i])[2]
    end
  end
end
local left = redis.call('SCARD', KEYS[4])
if left == 0 then
  redis.call('SREM', KEYS[5], ARGV[5])
end
return {offline, refused, left}
