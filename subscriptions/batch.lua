-- Deliver a batch of different messages, one per pair of KEYS (a user's stream and channel),
-- as delivery.lua does for one: append, expire, publish. On Redis Cluster the pairs of one
-- call share a bucket, so one slot.
-- ARGV[1] history size, ARGV[2] history TTL in ms, ARGV[3] the publish command,
-- ARGV[4] the deadline in Redis's clock (see delivery.lua), ARGV[4+i] the tail of pair i.
-- Returns, in order, each message's id, or the error that kept it from being stored: one
-- message's failure (a key of the wrong type) must neither fail nor misreport the others.
local now = redis.call('TIME')
if tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) > tonumber(ARGV[4]) then
  return redis.error_reply('DEADLINE the caller gave up before Redis ran the delivery')
end
local ids = {}
for i = 1, #KEYS / 2 do
  local tail = ARGV[4 + i]
  local id = redis.pcall('XADD', KEYS[2 * i - 1], 'MAXLEN', ARGV[1], '*', 'e', tail)
  if type(id) == 'string' then
    redis.call('PEXPIRE', KEYS[2 * i - 1], ARGV[2])
    redis.call(ARGV[3], KEYS[2 * i], '{"type":"message","id":"' .. id .. '"' .. tail)
  end
  ids[i] = id
end
return ids
