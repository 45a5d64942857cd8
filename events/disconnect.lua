-- Forget a closed connection and queue user.offline if it was the user's last anywhere.
-- KEYS[1] shard stream, KEYS[2] its bytes counter, KEYS[3] its users' bytes hash,
-- KEYS[4] the user's presence hash, KEYS[5] the node's user set, KEYS[6] the shard's node set
-- ARGV[1..4] limits (lib.lua; ARGV[1] '0': do not queue events), ARGV[5] field
-- "<node>/<conn>", ARGV[6] user, ARGV[7] node, ARGV[8] the user.offline JSON
-- Returns {1 if the user went offline, 1 if its event did not fit in the queue}.
if redis.call('HDEL', KEYS[4], ARGV[5]) == 0 then
  return {0, 0} -- a retry, or NodeGone already removed this node's connections
end
local prefix = ARGV[7] .. '/'
local fields = redis.call('HKEYS', KEYS[4])
local here = false
for _, f in ipairs(fields) do
  if string.sub(f, 1, #prefix) == prefix then
    here = true
    break
  end
end
if not here then
  redis.call('SREM', KEYS[5], ARGV[6])
  if redis.call('SCARD', KEYS[5]) == 0 then
    redis.call('SREM', KEYS[6], ARGV[7])
  end
end
if #fields > 0 then
  return {0, 0}
end
return transitioned(KEYS, limits(ARGV), ARGV[6], ARGV[8])
