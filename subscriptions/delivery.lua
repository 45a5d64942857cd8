-- Append a message to users' streams and publish it on their channels, atomically, so that
-- a message is stored if and only if it was published and its id is the stream id.
-- KEYS: pairs of a user's stream and channel (one pair for a direct message, several for a
-- room fan-out; on Redis Cluster the pairs of one call share a bucket, so one slot)
-- ARGV[1] history size (exact MAXLEN), ARGV[2] history TTL in ms, ARGV[3] envelope tail,
-- ARGV[4] the publish command ("PUBLISH", or "SPUBLISH" on Redis Cluster),
-- ARGV[5] a deadline in Redis's clock (unix ms): a call that reaches Redis after its caller
-- gave up (a frozen Redis wakes up with it still in its socket buffer) must do nothing, since
-- the caller has answered "nothing was accepted".
-- Returns the id of the (last) message appended.
local now = redis.call('TIME')
if tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) > tonumber(ARGV[5]) then
  return redis.error_reply('DEADLINE the caller gave up before Redis ran the delivery')
end
local id
for i = 1, #KEYS, 2 do
  id = redis.call('XADD', KEYS[i], 'MAXLEN', ARGV[1], '*', 'e', ARGV[3])
  redis.call('PEXPIRE', KEYS[i], ARGV[2])
  redis.call(ARGV[4], KEYS[i + 1], '{"type":"message","id":"' .. id .. '"' .. ARGV[3])
end
return id
