-- Append a message to a user's stream and publish it on the user's channel, atomically, so
-- that a message is stored if and only if it was published and its id is the stream id.
-- KEYS[1] the user's stream, KEYS[2] the user's channel
-- ARGV[1] history size (exact MAXLEN), ARGV[2] history TTL in ms, ARGV[3] envelope tail,
-- ARGV[4] the publish command ("PUBLISH", or "SPUBLISH" on Redis Cluster),
-- ARGV[5] a deadline in Redis's clock (unix ms): a call that reaches Redis after its caller
-- gave up (a frozen Redis wakes up with it still in its socket buffer) must do nothing, since
-- the caller has answered "nothing was accepted".
local now = redis.call('TIME')
if tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) > tonumber(ARGV[5]) then
  return redis.error_reply('DEADLINE the caller gave up before Redis ran the delivery')
end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[1], '*', 'e', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call(ARGV[4], KEYS[2], '{"type":"message","id":"' .. id .. '"' .. ARGV[3])
return id
