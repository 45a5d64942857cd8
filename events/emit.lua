-- Queue one event.
-- KEYS[1] shard stream
-- ARGV[1] bound of the stream, ARGV[2] the event's JSON
-- Returns the number of entries the bound trimmed away.
return emit(KEYS[1], ARGV[1], ARGV[2])
