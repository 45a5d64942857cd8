-- Count a new connection of a user and queue user.online if it is the user's first anywhere.
-- KEYS[1] shard stream, KEYS[2] its bytes counter, KEYS[3] its users' bytes hash,
-- KEYS[4] the user's presence hash, KEYS[5] the node's user set, KEYS[6] the shard's node set
-- ARGV[1..4] limits (lib.lua; ARGV[1] '0': do not queue events), ARGV[5] field
-- "<node>/<conn>", ARGV[6] connect time (unix ms), ARGV[7] user, ARGV[8] node,
-- ARGV[9] the user.online JSON
-- Returns {1 if the user came online, 1 if its event did not fit in the queue}.
if redis.call('HSETNX', KEYS[4], ARGV[5], ARGV[6]) == 0 then
  return {0, 0} -- a retry of a call that already counted this connection
end
redis.call('SADD', KEYS[5], ARGV[7])
redis.call('SADD', KEYS[6], ARGV[8])
if redis.call('HLEN', KEYS[4]) ~= 1 then
  return {0, 0}
end
return transitioned(KEYS, limits(ARGV), ARGV[7], ARGV[9])
