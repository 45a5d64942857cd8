package subscriptions

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"strings"
)

// A send that Redis failed over under can reach a client twice: the dying master published
// it (a connected client got it) but never replicated it, the backend got a 503 and retried
// under its Idempotency-Key, and the new master, which has no record of the key, stored and
// published it again, under another id. Ids cannot tell the two apart; the key can. So a send
// under a key carries a dedupe token derived from it, the same for every retry, and a
// subscription remembers the tokens of the last messages it delivered and drops a repeat.
// Clients that reconnect in between (a new subscription remembers nothing) drop repeats by
// the same token (docs/protocol.md).

// dedupeField starts the token in an envelope's tail.
const dedupeField = `,"dedupe":"`

// dedupeLen is a token's length: 16 base64url characters, 96 bits of a SHA-256.
const dedupeLen = 16

// dedupeToken is the dedupe token of a send under an idempotency key: kind ("dm" or "room")
// and target (the recipient or the room) say where it goes, scope tells apart the sends to
// it that may share a key (a single send, an item of a batch), as the key's records do. Two
// sends that reach one connection have one token only if they are one send and its retry.
func dedupeToken(kind, target, scope, key string) string {
	sum := sha256.Sum256([]byte(kind + "\x00" + target + "\x00" + scope + "\x00" + key))
	return base64.RawURLEncoding.EncodeToString(sum[:dedupeLen*3/4])
}

// validDedupe reports whether t is shaped as dedupeToken makes them: it is written into
// envelopes unescaped.
func validDedupe(t string) bool { return len(t) == dedupeLen && dedupeDigest(t) != 0 }

// dedupeDigest is what a subscription remembers of a token: its first 8 bytes (the token is
// a hash already), or 0 for a string that is not a token.
func dedupeDigest(t string) uint64 {
	var raw [dedupeLen * 3 / 4]byte
	if n, err := base64.RawURLEncoding.Decode(raw[:], []byte(t)); err != nil || n != len(raw) {
		return 0
	}
	return max(binary.LittleEndian.Uint64(raw[:]), 1)
}

// dedupeOf reads the dedupe token of an envelope from what follows its id: the fields a
// delivery puts before the tail (",\"big\":true", ",\"history_id\":...") and then the tail,
// which starts with the token when it has one. It returns the token's digest, or 0. Only
// that position counts, so that a "dedupe" inside a message's data is never taken for one.
func dedupeOf(rest string) uint64 {
	rest = strings.TrimPrefix(rest, `,"big":true`)
	if after, ok := strings.CutPrefix(rest, `,"history_id":"`); ok {
		end := strings.IndexByte(after, '"')
		if end < 0 || end > 41 {
			return 0
		}
		rest = after[end+1:]
	}
	tok, ok := strings.CutPrefix(rest, dedupeField)
	if !ok || len(tok) <= dedupeLen || tok[dedupeLen] != '"' {
		return 0
	}
	return dedupeDigest(tok[:dedupeLen])
}

// recentLen is how many tokens a subscription remembers: a retry follows its send within
// seconds (the failover), and a connection gets few keyed messages in that time.
const recentLen = 32

// recentTokens remembers the dedupe tokens of the last messages a subscription delivered.
// It is allocated at a connection's first keyed message: 264 bytes, none for connections
// that never get one.
type recentTokens struct {
	ring [recentLen]uint64
	next int
}

// repeat reports whether d was delivered before, and remembers it if not.
func (r *recentTokens) repeat(d uint64) bool {
	for _, x := range r.ring {
		if x == d {
			return true
		}
	}
	r.ring[r.next] = d
	r.next = (r.next + 1) % recentLen
	return false
}
