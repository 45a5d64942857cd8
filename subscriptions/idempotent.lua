-- Deliver direct messages that carry an idempotency record, as batch.lua delivers them, and
-- decide in the same call whether each was delivered before: a retry must deliver nothing.
-- KEYS: triples of a user's stream, channel and idempotency record (on Redis Cluster the
-- triples of one call share a bucket, so one slot).
-- ARGV[1] history size, ARGV[2] history TTL in ms, ARGV[3] the publish command,
-- ARGV[4] the deadline in Redis's clock (see delivery.lua), ARGV[5] the record's TTL in ms,
-- ARGV[4+2i] the tail of message i, ARGV[5+2i] its request fingerprint.
-- A record holds "<fingerprint> <id>". Returns, in order, per message: its new id; "r" and
-- the id it was stored under when its record says it was delivered already; or an error:
-- IDEMPOTENCY_CONFLICT when the record holds another request's fingerprint.
local now = redis.call('TIME')
if tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) > tonumber(ARGV[4]) then
  return redis.error_reply('DEADLINE the caller gave up before Redis ran the delivery')
end
local out = {}
for i = 1, #KEYS / 3 do
  local tail, fp = ARGV[4 + 2 * i], ARGV[5 + 2 * i]
  local old = redis.call('GET', KEYS[3 * i])
  if old then
    local sep = string.find(old, ' ', 1, true)
    if sep and string.sub(old, 1, sep - 1) == fp then
      out[i] = 'r' .. string.sub(old, sep + 1)
    else
      out[i] = redis.error_reply('IDEMPOTENCY_CONFLICT the key was used with another request')
    end
  else
    local id = redis.pcall('XADD', KEYS[3 * i - 2], 'MAXLEN', ARGV[1], '*', 'e', tail)
    if type(id) == 'string' then
      redis.call('PEXPIRE', KEYS[3 * i - 2], ARGV[2])
      redis.call(ARGV[3], KEYS[3 * i - 1], '{"type":"message","id":"' .. id .. '"' .. tail)
      redis.call('SET', KEYS[3 * i], fp .. ' ' .. id, 'PX', ARGV[5])
    end
    out[i] = id
  end
end
return out
