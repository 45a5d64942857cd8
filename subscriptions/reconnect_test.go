package subscriptions

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/switchboard-dev/switchboard/internal/redistest"
	"github.com/switchboard-dev/switchboard/internal/testutil"
)

// publishDuring publishes n messages to user while fault runs halfway, and returns the ids
// in publish order. It runs on goroutines of its own, so it returns its error rather than
// failing the test.
func publishDuring(h *Hub, user string, n int, fault func() error) ([]StreamID, error) {
	ids := make([]StreamID, 0, n)
	for i := range n {
		if i == n/2 {
			if err := fault(); err != nil {
				return ids, err
			}
		}
		var id StreamID
		var err error
		// Redis itself stays up in these tests; a publish only fails while it is frozen.
		for attempt := 0; ; attempt++ {
			if id, err = h.Publish(context.Background(), user, Envelope{Data: []byte(strconv.Itoa(i))}); err == nil {
				break
			}
			if attempt > 100 {
				return ids, fmt.Errorf("publish %d: %w", i, err)
			}
			time.Sleep(20 * time.Millisecond) // a pause between retries, not a wait for a condition
		}
		ids = append(ids, id)
	}
	return ids, nil
}

func TestPubSubKilledMidStreamLosesNothing(t *testing.T) {
	srv := redistest.Start(t)
	h := startHub(t, srv)
	rdb := srv.Client(t) // made here: helpers that take t may not run on the publishers' goroutines
	users := []string{"alice", "bob", "carol"}
	sinks := map[string][]*sink{}
	for _, u := range users {
		for range 2 {
			s := &sink{}
			subscribe(t, h, u, "", s)
			sinks[u] = append(sinks[u], s)
		}
	}
	var mu sync.Mutex
	sent := map[string][]StreamID{}
	var g errgroup.Group // the publishers' errors come back to the test's goroutine
	for _, u := range users {
		g.Go(func() error {
			ids, err := publishDuring(h, u, 300, func() error {
				if u != "alice" {
					return nil
				}
				return rdb.ClientKillByFilter(context.Background(), "TYPE", "pubsub").Err()
			})
			mu.Lock()
			sent[u] = ids
			mu.Unlock()
			return err
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	for _, u := range users {
		for i, s := range sinks[u] {
			testutil.WaitFor(t, 10*time.Second, func() bool { return s.count() >= len(sent[u]) }, u+" sink "+strconv.Itoa(i))
			msgs, dropped := s.snapshot()
			if dropped != nil {
				t.Fatalf("%s: dropped: %v", u, dropped)
			}
			checkInOrder(t, msgs, sent[u])
		}
	}
}

func TestFrozenRedisIsDetectedAndCaughtUp(t *testing.T) {
	srv := redistest.Start(t)
	h := startHub(t, srv) // heartbeat 200ms: the link is rebuilt after 600ms of silence
	s := &sink{}
	subscribe(t, h, "bob", "", s)
	first := publish(t, h, "bob", "0")
	testutil.WaitFor(t, 5*time.Second, func() bool { return s.count() == 1 }, "first delivery")

	srv.Freeze()
	testutil.WaitFor(t, 10*time.Second, func() bool { return h.Ready() != nil }, "readiness to turn off while Redis is frozen")
	testutil.WaitFor(t, 10*time.Second, func() bool { return h.Stats().PubSubReconnects > 0 }, "the watchdog to rebuild the quiet Pub/Sub link")
	srv.Thaw()
	testutil.WaitFor(t, 10*time.Second, func() bool { return h.Ready() == nil }, "readiness to come back")
	ids := []StreamID{first}
	for i := 1; i < 20; i++ {
		ids = append(ids, publish(t, h, "bob", strconv.Itoa(i)))
	}
	testutil.WaitFor(t, 10*time.Second, func() bool { return s.count() >= len(ids) }, "deliveries after the freeze")
	msgs, dropped := s.snapshot()
	if dropped != nil {
		t.Fatalf("dropped: %v", dropped)
	}
	checkInOrder(t, msgs, ids)
}

func TestMessagesPublishedWhileThePubSubLinkIsDownAreCaughtUp(t *testing.T) {
	srv := redistest.Start(t)
	h := startHub(t, srv)
	s := &sink{}
	subscribe(t, h, "bob", "", s)
	// Freeze the node's view: make it rebuild repeatedly while another publisher (a second
	// hub, as another node would) keeps sending.
	other := startHub(t, srv, func(c *Config) { c.Node = "n2" })
	var ids []StreamID
	for i := range 200 {
		if i%50 == 25 {
			srv.KillPubSubClients(t)
		}
		ids = append(ids, publish(t, other, "bob", strconv.Itoa(i)))
	}
	testutil.WaitFor(t, 10*time.Second, func() bool { return s.count() >= len(ids) }, "all deliveries")
	t.Logf("reconnects %d, caught up %d", h.Stats().PubSubReconnects, h.Stats().CaughtUp)
	msgs, dropped := s.snapshot()
	if dropped != nil {
		t.Fatalf("dropped: %v", dropped)
	}
	checkInOrder(t, msgs, ids)
}

func TestCatchUpPastTrimmedHistoryDropsTheConnection(t *testing.T) {
	srv := redistest.Start(t)
	h := startHub(t, srv, func(c *Config) { c.HistorySize = 5 })
	s := &sink{}
	sub, _ := subscribe(t, h, "bob", "", s)
	publish(t, h, "bob", "0")
	testutil.WaitFor(t, 5*time.Second, func() bool { return s.count() == 1 }, "first delivery")
	// Take the node's Pub/Sub link away for longer than the history lasts: stop the
	// subscription's live feed by hand, publish past the history, then catch up.
	sub.mu.Lock()
	sub.state = stateSyncing // as if a catch-up were pending: live messages are buffered
	sub.mu.Unlock()
	for i := range 10 {
		publish(t, h, "bob", strconv.Itoa(i+1))
	}
	sub.mu.Lock()
	sub.state = stateLive
	sub.pending = nil // what the dead link never brought
	sub.mu.Unlock()
	sub.requestCatchup()
	testutil.WaitFor(t, 5*time.Second, func() bool { _, d := s.snapshot(); return d != nil }, "the drop")
	if _, d := s.snapshot(); d != ErrLagged {
		t.Fatalf("dropped with %v, want ErrLagged", d)
	}
}
