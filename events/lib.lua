-- Shared by the scripts that queue events; Go prepends it to each of them.

-- emit appends an event to a shard stream, trims the stream to about maxlen entries, and
-- returns how many entries the trim removed, so that what the bound drops is counted.
-- Entries already delivered were deleted (XDEL), so whatever a trim removes was not sent.
local function emit(stream, maxlen, event)
  local before = redis.call('XLEN', stream)
  redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 'e', event)
  return before + 1 - redis.call('XLEN', stream)
end

-- transitioned answers a presence script whose change took a user online or offline: it
-- queues the event unless events are off (maxlen '0') and returns {1, entries trimmed}.
local function transitioned(stream, maxlen, event)
  local trimmed = 0
  if maxlen ~= '0' then
    trimmed = emit(stream, maxlen, event)
  end
  return {1, trimmed}
end
