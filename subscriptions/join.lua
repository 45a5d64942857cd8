-- Add members to capped sets, all or nothing: a join adds the room to the user's set of rooms
-- and the user to the room's set of members, and each set refuses a new member once it holds
-- its cap. A member already in a set passes whatever the cap, so re-joining at the cap works.
-- KEYS: the sets (on Redis Cluster one per call, since a user's rooms and a room's members
-- live in different slots).
-- ARGV: for each key, the member to add and the set's cap.
-- Returns -i when KEYS[i] is full and nothing was added; otherwise the SADD answer of the
-- last key (1: the member is new there, 0: it was already in).
for i = 1, #KEYS do
  local member, cap = ARGV[2 * i - 1], tonumber(ARGV[2 * i])
  if redis.call('SISMEMBER', KEYS[i], member) == 0 and redis.call('SCARD', KEYS[i]) >= cap then
    return -i
  end
end
local added = 0
for i = 1, #KEYS do
  added = redis.call('SADD', KEYS[i], ARGV[2 * i - 1])
end
return added
