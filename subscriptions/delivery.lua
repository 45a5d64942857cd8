-- Append one message to users' streams and publish it on their channels: a room fan-out
-- (several pairs of KEYS, one message) or any single delivery.
-- KEYS: pairs of a user's stream and channel (on Redis Cluster the pairs of one call share a
-- bucket, so one slot), then, when KEYS has an odd count, the room's history stream (on a
-- single Redis, or alone on Redis Cluster, where it has a slot of its own).
-- ARGV[1] history size (exact MAXLEN), ARGV[2] history TTL in ms, ARGV[3] envelope tail,
-- ARGV[4] the publish command ("PUBLISH", or "SPUBLISH" on Redis Cluster),
-- ARGV[5] a deadline in Redis's clock (unix ms): a call that reaches Redis after its caller
-- gave up (a frozen Redis wakes up with it still in its socket buffer) must do nothing, since
-- the caller has answered "nothing was accepted".
-- ARGV[6] the room history size, with a room stream.
-- Each user's message is stored if and only if it is published, and its id is the stream id.
-- With a room stream the message is appended there first, and every member's copy carries
-- that id as "history_id", so that a client can tell a live message it also read from the
-- room's history.
-- Returns how many users could not be delivered to (a key of the wrong type): one bad key
-- does not stop the others; with a room stream, {that count, the room stream id}.
local now = redis.call('TIME')
if tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) > tonumber(ARGV[5]) then
  return redis.error_reply('DEADLINE the caller gave up before Redis ran the delivery')
end
local tail = ARGV[3]
local pairs = #KEYS - #KEYS % 2
local rid = nil
if pairs < #KEYS then
  local room = KEYS[#KEYS]
  rid = redis.call('XADD', room, 'MAXLEN', ARGV[6], '*', 'e', tail)
  redis.call('PEXPIRE', room, ARGV[2])
  tail = ',"history_id":"' .. rid .. '"' .. tail
end
local failed = 0
for i = 1, pairs, 2 do
  local id = redis.pcall('XADD', KEYS[i], 'MAXLEN', ARGV[1], '*', 'e', tail)
  if type(id) == 'string' then
    redis.call('PEXPIRE', KEYS[i], ARGV[2])
    redis.call(ARGV[4], KEYS[i + 1], '{"type":"message","id":"' .. id .. '"' .. tail)
  else
    failed = failed + 1
  end
end
if rid then
  return {failed, rid}
end
return failed
