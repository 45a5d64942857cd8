-- One page of a user's stream for a replay, so that a resume holds a bounded part of the
-- history in the node's memory, not all of it.
-- KEYS[1] the stream. ARGV[1] the id to read from, inclusive (the position already
-- delivered: finding it proves nothing after it was trimmed); ARGV[2] at most how many
-- entries; ARGV[3] at most how many bytes of field values; ARGV[4] the anchor id, returned
-- without its fields (it was delivered already, and costs no bytes).
-- Returns {cut, entries}: cut is 1 when the byte bound ended the page before the stream or
-- the count did. The first entry after the anchor is always returned, whatever its size, so
-- that every page makes progress. The stream is read in growing chunks, so that a page of
-- a few large messages does not make Redis copy hundreds of them to throw them away.
local start = ARGV[1]
local want = tonumber(ARGV[2])
local budget = tonumber(ARGV[3])
local anchor = ARGV[4]
local out = {}
local bytes, kept = 0, 0
local chunk = 4
while #out < want do
  local n = math.min(chunk, want - #out)
  local entries = redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', n)
  for i = 1, #entries do
    local e = entries[i]
    if e[1] == anchor then
      out[#out + 1] = {e[1], {}}
    else
      local size = 0
      local fields = e[2]
      for j = 2, #fields, 2 do
        size = size + #fields[j]
      end
      if kept > 0 and bytes + size > budget then
        return {1, out}
      end
      bytes = bytes + size
      kept = kept + 1
      out[#out + 1] = e
    end
  end
  if #entries < n then
    return {0, out}
  end
  start = '(' .. entries[#entries][1]
  chunk = math.min(chunk * 2, 128)
end
return {0, out}
