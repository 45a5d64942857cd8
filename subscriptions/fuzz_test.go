package subscriptions

import (
	"encoding/json"
	"testing"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"
)

// FuzzParseStreamID checks that any id that parses prints back to an id that parses to the
// same value, and that nothing panics.
func FuzzParseStreamID(f *testing.F) {
	for _, s := range []string{"0-0", "1732483200000-3", "5", "18446744073709551615-18446744073709551615", "-1", "1-", "a-b", "1-2-3", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseStreamID(s)
		if err != nil {
			return
		}
		again, err := ParseStreamID(id.String())
		if err != nil || again != id {
			t.Fatalf("%q parsed to %v, which prints as %q and parses to %v, %v", s, id, id.String(), again, err)
		}
	})
}

// FuzzEnvelopeRoundTrip checks that every envelope the hub builds is valid JSON whose id
// decodes back, whatever the data, and that decodeMessage never panics on garbage.
func FuzzEnvelopeRoundTrip(f *testing.F) {
	f.Add("alice", "lobby", []byte(`{"a":1}`), false, "1-1")
	f.Add("", "", []byte{0, 255}, true, "99-0")
	f.Fuzz(func(t *testing.T, from, room string, data []byte, binary bool, id string) {
		decodeMessage(string(data)) // garbage published on a channel must not panic
		sid, err := ParseStreamID(id)
		if err != nil || (from != "" && !ValidID(from)) || (room != "" && !ValidID(room)) {
			return
		}
		env := Envelope{From: from, Room: room}
		if binary {
			env.Binary = data
		} else if utf8.Valid(data) && json.Valid(data) { // what the service accepts as JSON
			env.Data = data
		} else {
			return
		}
		payload := assemble(sid.String(), env.tail())
		if !json.Valid(payload) {
			t.Fatalf("envelope is not JSON: %s", payload)
		}
		m, ok := decodeMessage(string(payload))
		if !ok || m.ID != sid {
			t.Fatalf("envelope %s decodes to %v %v", payload, m.ID, ok)
		}
	})
}

// Invalid UTF-8 can reach a node only from another writer of its Redis keys; a text frame
// carrying it makes a browser fail the connection, so neither the Pub/Sub reader nor a
// stream read takes it for a message.
func TestInvalidUTF8FromRedisIsNotAMessage(t *testing.T) {
	good, bad := `,"data":"café"}`, ",\"data\":\"caf\xe9\"}"
	if _, ok := decodeMessage(string(assemble("5-0", good))); !ok {
		t.Fatal("a valid envelope was refused")
	}
	if _, ok := decodeMessage(string(assemble("5-0", bad))); ok {
		t.Fatal("the Pub/Sub reader took an envelope with invalid UTF-8 for a message")
	}
	if _, ok := entryMessage(redis.XMessage{ID: "5-0", Values: map[string]any{"e": good}}); !ok {
		t.Fatal("a valid stream entry was refused")
	}
	if _, ok := entryMessage(redis.XMessage{ID: "5-0", Values: map[string]any{"e": bad}}); ok {
		t.Fatal("a stream read took an entry with invalid UTF-8 for a message")
	}
}
