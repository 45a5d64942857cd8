-- Deliver direct messages that carry an idempotency record, as batch.lua delivers them, and
-- decide in the same call whether each was delivered before: a retry must deliver nothing.
-- KEYS: pairs of a user's stream and channel, then the base name of the record hashes (on
-- Redis Cluster every key of one call shares a bucket, so one slot).
-- ARGV[1] history size, ARGV[2] history TTL in ms, ARGV[3] the publish command,
-- ARGV[4] the deadline in Redis's clock (see delivery.lua), ARGV[5] the records' TTL in ms,
-- then per message i: ARGV[3+3i] its tail, ARGV[4+3i] its record's field (the send's dedupe
-- token: kind, recipient, scope and key), ARGV[5+3i] its request fingerprint.
--
-- Records are fields of one hash per TTL-long period, "<base>:<ttl>:<period>", not a key
-- each: a call writes all of its records with one HSET, so that a keyed send costs Redis
-- little more than an unkeyed one (a key per record cost ≈ 6 µs of Redis per send). A
-- lookup reads the current and the previous period; the first record written in a period
-- unlinks the period before the previous one, freed off the main thread. So a record is
-- kept at least one TTL and at most about two; each hash also expires three periods after
-- its own starts, should no record come to unlink it.
-- A record holds "<fingerprint> <id>". Returns, in order, per message: its new id; "r" and
-- the id it was stored under when its record says it was delivered already; or an error:
-- IDEMPOTENCY_CONFLICT when the record holds another request's fingerprint.
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
if ms > tonumber(ARGV[4]) then
  return redis.error_reply('DEADLINE the caller gave up before Redis ran the delivery')
end
local ttl = tonumber(ARGV[5])
local period = math.floor(ms / ttl)
local base = KEYS[#KEYS] .. ':' .. ARGV[5] .. ':'
local current = base .. string.format('%d', period)
local n = (#KEYS - 1) / 2
local fields = {}
for i = 1, n do
  fields[i] = ARGV[4 + 3 * i]
end
local cur = redis.call('HMGET', current, unpack(fields))
local prev = redis.call('HMGET', base .. string.format('%d', period - 1), unpack(fields))
local written = {} -- this call's records: a send and its retry may share a call
local new = {}
local out = {}
for i = 1, n do
  local tail, field, fp = ARGV[3 + 3 * i], fields[i], ARGV[5 + 3 * i]
  local old = written[field] or cur[i] or prev[i]
  if old then
    local sep = string.find(old, ' ', 1, true)
    if sep and string.sub(old, 1, sep - 1) == fp then
      out[i] = 'r' .. string.sub(old, sep + 1)
    else
      out[i] = redis.error_reply('IDEMPOTENCY_CONFLICT the key was used with another request')
    end
  else
    local id = redis.pcall('XADD', KEYS[2 * i - 1], 'MAXLEN', ARGV[1], '*', 'e', tail)
    if type(id) == 'string' then
      redis.call('PEXPIRE', KEYS[2 * i - 1], ARGV[2])
      redis.call(ARGV[3], KEYS[2 * i], '{"type":"message","id":"' .. id .. '"' .. tail)
      written[field] = fp .. ' ' .. id
      new[#new + 1] = field
      new[#new + 1] = written[field]
    end
    out[i] = id
  end
end
if #new > 0 then
  redis.call('HSET', current, unpack(new))
  if redis.call('PEXPIREAT', current, string.format('%d', (period + 3) * ttl), 'NX') == 1 then
    redis.call('UNLINK', base .. string.format('%d', period - 2))
  end
end
return out
