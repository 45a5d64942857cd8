package subscriptions

import (
	"strconv"
	"testing"

	"github.com/redis/go-redis/v9"
)

// TestAllocationBudgets pins the allocations of the per-message hot paths, so that a change
// that adds one shows up as a failing test rather than as a slower benchmark nobody reran.
// The numbers are what the code does today; lower them when it does better.
func TestAllocationBudgets(t *testing.T) {
	env := Envelope{From: "billing", Data: []byte(`{"text":"hello there, this is a direct message"}`)}
	check := func(name string, budget float64, f func()) {
		t.Helper()
		if got := testing.AllocsPerRun(200, f); got > budget {
			t.Errorf("%s: %.1f allocations per run, budget %.0f", name, got, budget)
		}
	}
	check("encoding an envelope's tail", 1, func() { _ = env.tail() })
	payload := string(assemble("1764131000000-42", env.tail()))
	check("decoding a published envelope", 0, func() { _, _ = decodeMessage(payload) })

	// Dispatch: one Pub/Sub message to a user with 10 local connections.
	l, c := dispatchFixture(t, 10)
	name := c.name
	// Ids must grow or the dedupe drops the message: build them all before measuring.
	msgs := make([]*redis.Message, 1000)
	for i := range msgs {
		msgs[i] = &redis.Message{Channel: name, Payload: string(assemble("1764131000000-"+strconv.Itoa(i+1), env.tail()))}
	}
	next := 0
	check("dispatching to 10 connections", 0, func() {
		l.dispatch(msgs[next])
		next++
	})
	if got := c.subs[0].sink.(*nopSink).n; got < 200 {
		t.Fatalf("the dispatch test delivered %d messages; it measured nothing", got)
	}
}
