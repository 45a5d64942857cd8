package subscriptions

import (
	"context"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/internal/redistest"
	"github.com/switchboard-dev/switchboard/internal/testutil"
)

// TestARepeatedSendIsDeliveredOncePerConnection: a backend's retry that Redis stored again
// under another id (after a failover lost the first) carries the first's dedupe token, and
// a connection is handed it once, live and in a replay alike. The stream keeps both: the
// server does not pretend the second store did not happen.
func TestARepeatedSendIsDeliveredOncePerConnection(t *testing.T) {
	srv := redistest.Start(t)
	h := startHub(t, srv)
	live := &sink{}
	subscribe(t, h, "bob", "", live)
	ctx := context.Background()
	tok, other := dedupeToken("dm", "bob", "u", "k1"), dedupeToken("dm", "bob", "u", "k2")
	sends := []Envelope{
		{Data: []byte(`1`), Dedupe: tok},
		{Data: []byte(`2`)},
		{Data: []byte(`1`), Dedupe: tok}, // the retry, stored again
		{Data: []byte(`3`), Dedupe: other},
		// A token inside the data is data, not a token: delivered.
		{Data: []byte(`{"dedupe":"` + tok + `"}`)},
		{From: "x", Data: []byte(`{"dedupe":"` + tok + `"}`)},
	}
	var ids []StreamID
	for _, env := range sends {
		id, err := h.Publish(ctx, "bob", env)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	want := []StreamID{ids[0], ids[1], ids[3], ids[4], ids[5]}
	last := ids[len(ids)-1]
	testutil.WaitFor(t, 5*time.Second, func() bool {
		msgs, _ := live.snapshot()
		return len(msgs) > 0 && msgs[len(msgs)-1].ID == last
	}, "the last send, live")
	msgs, _ := live.snapshot()
	checkInOrder(t, msgs, want)

	hist, err := h.History(ctx, "bob", "", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != len(sends) {
		t.Fatalf("history holds %d messages, want all %d stores", len(hist), len(sends))
	}

	replayed := &sink{}
	subscribe(t, h, "bob", "0-0", replayed)
	testutil.WaitFor(t, 5*time.Second, func() bool { return replayed.count() >= len(want) }, "the replay")
	msgs, _ = replayed.snapshot()
	checkInOrder(t, msgs, want)
}

func TestDedupeOfReadsOnlyTheTokensPlace(t *testing.T) {
	tok := dedupeToken("room", "lobby", "r", "key")
	if !validDedupe(tok) {
		t.Fatalf("dedupeToken made %q, which validDedupe refuses", tok)
	}
	if dedupeToken("room", "lobby", "r", "key") != tok {
		t.Fatal("a token must be a function of what it is made of")
	}
	// Sends that may share a key and reach one connection: a batch's direct item and room
	// item of one index, or one key on two rooms.
	for _, other := range []string{dedupeToken("dm", "lobby", "r", "key"), dedupeToken("room", "hall", "r", "key"),
		dedupeToken("room", "lobby", "b1", "key"), dedupeToken("room", "lobby", "r", "key2"), dedupeToken("room", "lobbyr", "", "key")} {
		if other == tok {
			t.Fatal("two different sends got one token")
		}
	}
	tail := Envelope{From: "a", Data: []byte(`1`), Dedupe: tok}.tail()
	d := dedupeOf(tail)
	if d == 0 {
		t.Fatalf("no token read from %s", tail)
	}
	for _, tc := range []struct {
		name, rest string
		want       uint64
	}{
		{"a tail", tail, d},
		{"a small room's copy", `,"history_id":"5-0"` + tail, d},
		{"a big room's message", `,"big":true,"history_id":"5-0"` + tail, d},
		{"no token", Envelope{From: "a", Data: []byte(`1`)}.tail(), 0},
		{"a token in the data", `,"data":{"dedupe":"` + tok + `"}}`, 0},
		{"a token after another field", `,"from":"a","dedupe":"` + tok + `"}`, 0},
		{"a short token", `,"dedupe":"abc","data":1}`, 0},
		{"an unterminated token", `,"dedupe":"` + tok, 0},
		{"a broken history id", `,"history_id":"5-0` + tail, 0},
	} {
		if got := dedupeOf(tc.rest); got != tc.want {
			t.Errorf("%s: dedupeOf = %d, want %d", tc.name, got, tc.want)
		}
	}
	for _, bad := range []string{"", "short", tok + "x", "AAAAAAAAAAAAAAA\"", "AAAAAAAAAAAAAAA/", "AAAAAAAAAAAAAAA\n"} {
		if (Envelope{Dedupe: bad}).validIDs() && bad != "" {
			t.Errorf("an envelope with dedupe %q passed validation", bad)
		}
	}
}

func TestRecentTokensForgetTheOldest(t *testing.T) {
	var r recentTokens
	for i := range uint64(recentLen) {
		if r.repeat(i + 1) {
			t.Fatalf("token %d: a repeat on first sight", i+1)
		}
	}
	if !r.repeat(1) || !r.repeat(recentLen) {
		t.Fatal("a remembered token was not a repeat")
	}
	if r.repeat(recentLen + 1) { // evicts 1
		t.Fatal("a new token was a repeat")
	}
	if r.repeat(1) {
		t.Fatal("the oldest token was not forgotten")
	}
}
