-- Count a new connection of a user and queue user.online if it is the user's first anywhere.
-- KEYS[1] shard stream, KEYS[2] the user's presence hash, KEYS[3] the node's user set,
-- KEYS[4] the shard's node set
-- ARGV[1] bound of the stream ("0": do not queue events), ARGV[2] field "<node>/<conn>",
-- ARGV[3] connect time (unix ms), ARGV[4] user, ARGV[5] node, ARGV[6] the user.online JSON
-- Returns {1 if the user came online, entries trimmed}.
if redis.call('HSETNX', KEYS[2], ARGV[2], ARGV[3]) == 0 then
  return {0, 0} -- a retry of a call that already counted this connection
end
redis.call('SADD', KEYS[3], ARGV[4])
redis.call('SADD', KEYS[4], ARGV[5])
if redis.call('HLEN', KEYS[2]) ~= 1 then
  return {0, 0}
end
return transitioned(KEYS[1], ARGV[1], ARGV[6])
