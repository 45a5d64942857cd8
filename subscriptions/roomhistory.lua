-- Read a page of a room's own stream, bounded in entries and bytes, for the history frame
-- and GET /v1/rooms/{room}/messages.
-- KEYS[1] the room's stream; KEYS[2], when given, the room's member set: the page is only
-- read when ARGV[5] is a member (both keys share the room's slot).
-- ARGV[1] "fwd" (oldest first, after ARGV[2]) or "rev" (newest first, before ARGV[2]);
-- ARGV[2] the bound the page starts after: "-" or "+" for none, else "(<id>";
-- ARGV[3] at most how many entries; ARGV[4] at most how many bytes of envelopes (the first
-- entry is always returned, whatever its size, so that a reader makes progress).
-- Returns {more, {{id, tail}, ...}}, or {-1} when KEYS[2] is given and ARGV[5] is not in
-- it; more is 1 when entries past the page may exist (the page was cut by either bound).
if KEYS[2] and redis.call('SISMEMBER', KEYS[2], ARGV[5]) == 0 then
  return {-1}
end
local cmd, to = 'XRANGE', '+'
if ARGV[1] == 'rev' then
  cmd, to = 'XREVRANGE', '-'
end
local from = ARGV[2]
local want = tonumber(ARGV[3])
local budget = tonumber(ARGV[4])
local out, bytes = {}, 0
-- Read in growing chunks, each asking for one entry more than the page still needs, which
-- tells whether more remain without another read; the first chunk is small, so that a page
-- of a few large messages does not make Redis copy many to throw them away.
local chunk = 16
while true do
  local n = math.min(chunk, want - #out + 1)
  local entries = redis.call(cmd, KEYS[1], from, to, 'COUNT', n)
  for i = 1, #entries do
    if #out == want then
      return {1, out}
    end
    local e = entries[i]
    local tail = nil
    for j = 1, #e[2], 2 do
      if e[2][j] == 'e' then
        tail = e[2][j + 1]
      end
    end
    if tail then
      if #out > 0 and bytes + #tail > budget then
        return {1, out}
      end
      bytes = bytes + #tail
      out[#out + 1] = {e[1], tail}
    end
  end
  if #entries < n then
    return {0, out}
  end
  from = '(' .. entries[#entries][1]
  chunk = math.min(chunk * 4, 256)
end
