-- Append messages to users' streams and publish them on their channels: a room fan-out
-- (several pairs of KEYS, one or more messages of one room) or any single delivery.
-- KEYS: pairs of a user's stream and channel (on Redis Cluster the pairs of one call share a
-- bucket, so one slot), then, when KEYS has an odd count, the room's history stream (on a
-- single Redis, or alone on Redis Cluster, where it has a slot of its own).
-- ARGV[1] history size (exact MAXLEN), ARGV[2] history TTL in ms, ARGV[3] envelope tail,
-- ARGV[4] the publish command ("PUBLISH", or "SPUBLISH" on Redis Cluster),
-- ARGV[5] a deadline in Redis's clock (unix ms): a call that reaches Redis after its caller
-- gave up (a frozen Redis wakes up with it still in its socket buffer) must do nothing, since
-- the caller has answered "nothing was accepted".
-- ARGV[6] the room history size, with a room stream.
-- ARGV[7...] the tails of further messages, sent after ARGV[3] and in this order: sends of
-- one room that waited for the same fan-out (roombatch.go). A user's messages are appended
-- one after the other and published one after the other, so that they reach the node
-- together; the stream's TTL is set once, after the last.
-- Each user's message is stored if and only if it is published, and its id is the stream id.
-- With a room stream the messages are appended there first, and every member's copy carries
-- its message's id there as "history_id", so that a client can tell a live message it also
-- read from the room's history.
-- Returns how many users could not be delivered to (a key of the wrong type): one bad key
-- does not stop the others; with a room stream, {that count, the room stream ids...}.
local now = redis.call('TIME')
if tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) > tonumber(ARGV[5]) then
  return redis.error_reply('DEADLINE the caller gave up before Redis ran the delivery')
end
local tails = {ARGV[3]}
for j = 7, #ARGV do
  tails[#tails + 1] = ARGV[j]
end
local n = #tails
local pairs = #KEYS - #KEYS % 2
local rids = nil
if pairs < #KEYS then
  local room = KEYS[#KEYS]
  rids = {0}
  for j = 1, n do
    local rid = redis.call('XADD', room, 'MAXLEN', ARGV[6], '*', 'e', tails[j])
    rids[j + 1] = rid
    tails[j] = ',"history_id":"' .. rid .. '"' .. tails[j]
  end
  redis.call('PEXPIRE', room, ARGV[2])
end
local failed = 0
local ids = {}
for i = 1, pairs, 2 do
  local stored = 0
  for j = 1, n do
    local id = redis.pcall('XADD', KEYS[i], 'MAXLEN', ARGV[1], '*', 'e', tails[j])
    if type(id) ~= 'string' then
      break
    end
    ids[j] = id
    stored = j
  end
  if stored > 0 then
    redis.call('PEXPIRE', KEYS[i], ARGV[2])
    for j = 1, stored do
      redis.call(ARGV[4], KEYS[i + 1], '{"type":"message","id":"' .. ids[j] .. '"' .. tails[j])
    end
  end
  if stored < n then
    failed = failed + 1
  end
end
if rids then
  rids[1] = failed
  return rids
end
return failed
