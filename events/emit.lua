-- Queue one event if it fits in the byte budget (see lib.lua).
-- KEYS[1] shard stream, KEYS[2] its bytes counter, KEYS[3] its users' bytes hash
-- ARGV[1..4] limits (lib.lua), ARGV[5] user, ARGV[6] the event's JSON, ARGV[7] '1' for an
-- event the server generated (presence, rooms), '0' for a client's
-- Returns '' once queued, else why it was refused ('user_share' or 'queue_bytes').
return emit(KEYS, limits(ARGV), ARGV[5], ARGV[6], ARGV[7] == '1')
