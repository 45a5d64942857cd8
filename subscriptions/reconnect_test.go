package subscriptions

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/internal/redistest"
	"github.com/switchboard-dev/switchboard/internal/testutil"
)

// publishDuring publishes n messages to user from one goroutine while fault runs halfway,
// and returns the ids in publish order.
func publishDuring(t *testing.T, h *Hub, user string, n int, fault func()) []StreamID {
	t.Helper()
	ids := make([]StreamID, 0, n)
	for i := range n {
		if i == n/2 {
			fault()
		}
		var id StreamID
		var err error
		// Redis itself stays up in these tests; a publish only fails while it is frozen.
		for attempt := 0; ; attempt++ {
			if id, err = h.Publish(context.Background(), user, Envelope{Data: []byte(strconv.Itoa(i))}); err == nil {
				break
			}
			if attempt > 100 {
				t.Fatalf("publish %d: %v", i, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		ids = append(ids, id)
	}
	return ids
}

func TestPubSubKilledMidStreamLosesNothing(t *testing.T) {
	srv := redistest.Start(t)
	h := startHub(t, srv)
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
	var wg sync.WaitGroup
	for _, u := range users {
		wg.Go(func() {
			ids := publishDuring(t, h, u, 300, func() {
				if u == "alice" {
					srv.KillPubSubClients(t)
				}
			})
			mu.Lock()
			sent[u] = ids
			mu.Unlock()
		})
	}
	wg.Wait()
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
