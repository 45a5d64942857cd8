-- Forget a closed connection and queue user.offline if it was the user's last anywhere.
-- KEYS[1] shard stream, KEYS[2] the user's presence hash, KEYS[3] the node's user set,
-- KEYS[4] the shard's node set
-- ARGV[1] bound of the stream ("0": do not queue events), ARGV[2] field "<node>/<conn>",
-- ARGV[3] user, ARGV[4] node, ARGV[5] the user.offline JSON
-- Returns {1 if the user went offline, entries trimmed}.
if redis.call('HDEL', KEYS[2], ARGV[2]) == 0 then
  return {0, 0} -- a retry, or NodeGone already removed this node's connections
end
local prefix = ARGV[4] .. '/'
local fields = redis.call('HKEYS', KEYS[2])
local here = false
for _, f in ipairs(fields) do
  if string.sub(f, 1, #prefix) == prefix then
    here = true
    break
  end
end
if not here then
  redis.call('SREM', KEYS[3], ARGV[3])
  if redis.call('SCARD', KEYS[3]) == 0 then
    redis.call('SREM', KEYS[4], ARGV[4])
  end
end
if #fields > 0 then
  return {0, 0}
end
return transitioned(KEYS[1], ARGV[1], ARGV[5])
