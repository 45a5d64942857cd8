-- Send to a big room: one append to the room's stream and one publish on the room's
-- channel, whatever the member count (docs/design.md, "Big rooms").
-- KEYS[1] the room's mode hash, KEYS[2] its member set, KEYS[3] its stream, KEYS[4] its
-- channel (all in the room's slot).
-- ARGV[1] the sender to check for membership ('' for none), ARGV[2] the stream's MAXLEN,
-- ARGV[3] its TTL in ms, ARGV[4] the envelope tail, ARGV[5] "PUBLISH" or "SPUBLISH",
-- ARGV[6] a deadline in Redis's clock (unix ms; see delivery.lua), ARGV[7] the member count
-- below which the room turns small (0: never), ARGV[8] "1" for an ephemeral message.
-- Returns {0} when the room is small (nothing done), {-1} when the sender is not a member,
-- {1} when the room has shrunk below ARGV[7] (nothing done: the caller turns it small),
-- {2, id, members} once sent ('' as the id of an ephemeral message).
local now = redis.call('TIME')
if tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) > tonumber(ARGV[6]) then
  return redis.error_reply('DEADLINE the caller gave up before Redis ran the delivery')
end
if redis.call('HGET', KEYS[1], 'big') ~= '1' then
  return {0}
end
if ARGV[1] ~= '' and redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 0 then
  return {-1}
end
local members = redis.call('SCARD', KEYS[2])
if members < tonumber(ARGV[7]) then
  return {1}
end
if ARGV[8] == '1' then
  redis.call(ARGV[5], KEYS[4], '{"type":"message","ephemeral":true' .. ARGV[4])
  return {2, '', members}
end
local id = redis.call('XADD', KEYS[3], 'MAXLEN', ARGV[2], '*', 'e', ARGV[4])
redis.call('PEXPIRE', KEYS[3], ARGV[3])
redis.call(ARGV[5], KEYS[4], '{"type":"message","id":"' .. id .. '","big":true,"history_id":"' .. id .. '"' .. ARGV[4])
return {2, id, members}
