-- Shared by the scripts that queue events; Go prepends it to each of them.
--
-- The queue is bounded in bytes. Every entry records its user ('u') and what it costs
-- ('c': about what it takes of Redis's memory, see cost). Each
-- shard keeps, in its own slot, a counter of the bytes its entries cost and a hash of each
-- user's part of it; the script that queues an entry and the script that deletes it (ack.lua)
-- change the entry and the counters together, so no crash, retry or race between nodes can
-- make them disagree. An event that does not fit is refused: nothing already queued is ever
-- trimmed to make room.

-- What Redis spends on an entry besides its fields: its id and stream node, and its
-- pending-list records once a sender has read it.
local ENTRY_OVERHEAD = 128

-- cost is what an entry of n bytes (JSON and user id) is counted for. Entries up to 4 KB
-- share the stream's 4 KB nodes (stream-node-max-bytes), so they cost their size; a larger
-- one gets a node of its own, which the allocator (jemalloc) rounds up to its next size
-- class, a quarter of a power of two: an 8.3 KB event takes 10 KB.
local function cost(n)
  local size = n
  if n > 4096 then
    local p = 4096
    while p * 2 < n do
      p = p * 2
    end
    local step = p / 4
    size = math.ceil(n / step) * step
  end
  return size + ENTRY_OVERHEAD
end

-- limits reads the four arguments every queuing script starts with: the shard's budget in
-- bytes ('0': events are off), the part of it client events may use, one user's share, and
-- the counters' TTL in ms.
local function limits(argv)
  return {budget = tonumber(argv[1]), client = tonumber(argv[2]), user = tonumber(argv[3]), ttl = argv[4]}
end

-- emit queues a user's event on a shard if it fits and returns '', or the reason it was
-- refused: 'user_share' (a client event past its user's share) or 'queue_bytes' (past the
-- shard's budget; for a client event, past the part not reserved for server events).
-- k is {stream, bytes counter, users hash}; system is true for the server's own events.
local function emit(k, lim, user, event, system)
  local stream, total, users = k[1], k[2], k[3]
  -- Self-healing: an empty stream holds no bytes, whatever the counters say (a key deleted
  -- or evicted by hand, entries trimmed by an older version).
  if redis.call('XLEN', stream) == 0 then
    redis.call('DEL', total, users)
  end
  local c = cost(#event + #user)
  local queued = tonumber(redis.call('GET', total) or '0')
  if system then
    if queued + c > lim.budget then
      return 'queue_bytes'
    end
  else
    if tonumber(redis.call('HGET', users, user) or '0') + c > lim.user then
      return 'user_share'
    end
    if queued + c > lim.client then
      return 'queue_bytes'
    end
  end
  redis.call('XADD', stream, '*', 'e', event, 'u', user, 'c', c)
  redis.call('INCRBY', total, c)
  redis.call('HINCRBY', users, user, c)
  redis.call('PEXPIRE', total, lim.ttl)
  redis.call('PEXPIRE', users, lim.ttl)
  return ''
end

-- transitioned answers a presence script whose change took a user online or offline: it
-- queues the server's event unless events are off and returns {1, 1 if it was refused}.
-- The presence change stands either way.
local function transitioned(k, lim, user, event)
  if lim.budget == 0 or emit(k, lim, user, event, true) == '' then
    return {1, 0}
  end
  return {1, 1}
end
