-- Renew (ARGV[2] = TTL in ms) or release (ARGV[2] = "0") a shard's lease, only if this
-- sender instance still holds it: a lease taken over by another instance is never touched.
-- KEYS[1] the lease, ARGV[1] this instance's token
-- Returns 1 if the lease was held, else 0.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
if ARGV[2] == '0' then
  redis.call('DEL', KEYS[1])
else
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 1
