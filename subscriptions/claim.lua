-- Claim an idempotency record for a send that one script call cannot make (a room's
-- fan-out spans many calls), or read what it holds.
-- KEYS[1] the record. ARGV[1] the request's fingerprint, ARGV[2] the claim's TTL in ms.
-- A record holds "<fingerprint> <answer>"; an empty answer means a send is under way.
-- Returns {"claimed"} (the caller sends), {"pending"}, {"conflict"} (another request's
-- fingerprint) or {"done", answer}.
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], ARGV[1] .. ' ', 'PX', ARGV[2])
  return {'claimed'}
end
local sep = string.find(v, ' ', 1, true)
if not sep or string.sub(v, 1, sep - 1) ~= ARGV[1] then
  return {'conflict'}
end
local answer = string.sub(v, sep + 1)
if answer == '' then
  return {'pending'}
end
return {'done', answer}
