package subscriptions

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"

	"github.com/switchboard-dev/switchboard/internal/redistest"
	"github.com/switchboard-dev/switchboard/internal/testutil"
)

// sink records what a subscription delivers. With limit > 0 it refuses deliveries past
// limit, as a full connection queue does.
type sink struct {
	mu      sync.Mutex
	msgs    []Message
	limit   int
	dropped error
}

func (s *sink) Deliver(m Message) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.limit > 0 && len(s.msgs) >= s.limit {
		return false
	}
	s.msgs = append(s.msgs, m)
	return true
}

func (s *sink) Drop(reason error) {
	s.mu.Lock()
	s.dropped = reason
	s.mu.Unlock()
}

func (s *sink) snapshot() ([]Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs...), s.dropped
}

func (s *sink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.msgs)
}

// startHub runs a hub on a redis-server.
func startHub(t testing.TB, srv *redistest.Server, mods ...func(*Config)) *Hub {
	t.Helper()
	opts, err := redis.ParseURL(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	opts.MaxRetries = -1
	opts.ContextTimeoutEnabled = true
	opts.ReadTimeout = 2 * time.Second
	return startHubOn(t, redis.NewClient(opts), mods...)
}

// startHubOn runs a hub on rdb (a single Redis or a cluster) and closes rdb after it.
func startHubOn(t testing.TB, rdb redis.UniversalClient, mods ...func(*Config)) *Hub {
	t.Helper()
	cfg := Config{Node: "n1", Prefix: "t", Heartbeat: 200 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, m := range mods {
		m(&cfg)
	}
	h, err := New(rdb, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = h.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; _ = rdb.Close() })
	testutil.WaitFor(t, 10*time.Second, func() bool { return h.Ready() == nil }, "hub ready")
	return h
}

func subscribe(t testing.TB, h *Hub, user, since string, s Sink) (*Subscription, Welcome) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sub, w, err := h.Subscribe(ctx, user, since, s)
	if err != nil {
		t.Fatalf("subscribe %s: %v", user, err)
	}
	t.Cleanup(sub.Close)
	sub.Start()
	return sub, w
}

func publish(t testing.TB, h *Hub, user, data string) StreamID {
	t.Helper()
	id, err := h.Publish(context.Background(), user, Envelope{Data: []byte(data)})
	if err != nil {
		t.Fatalf("publish to %s: %v", user, err)
	}
	return id
}

// checkInOrder fails unless msgs are exactly ids, in order.
func checkInOrder(t testing.TB, msgs []Message, ids []StreamID) {
	t.Helper()
	if len(msgs) != len(ids) {
		t.Fatalf("got %d messages, want %d", len(msgs), len(ids))
	}
	for i := range ids {
		if msgs[i].ID != ids[i] {
			t.Fatalf("message %d: id %s, want %s", i, msgs[i].ID, ids[i])
		}
	}
}

func TestPublishStoresAndDeliversTheSameEnvelope(t *testing.T) {
	srv := redistest.Start(t)
	h := startHub(t, srv)
	s := &sink{}
	subscribe(t, h, "bob", "", s)
	id, err := h.Publish(context.Background(), "bob", Envelope{From: "alice", Room: "lobby", Data: []byte(`{"a":[1,2]}`)})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"type":"message","id":"` + id.String() + `","from":"alice","room":"lobby","data":{"a":[1,2]}}`
	testutil.WaitFor(t, 5*time.Second, func() bool { return s.count() == 1 }, "delivery")
	msgs, _ := s.snapshot()
	if string(msgs[0].Payload) != want {
		t.Fatalf("live envelope\n got %s\nwant %s", msgs[0].Payload, want)
	}
	hist, err := h.History(context.Background(), "bob", "", 10)
	if err != nil || len(hist) != 1 || string(hist[0].Payload) != want {
		t.Fatalf("history %v %v", hist, err)
	}
	// Stored once, bounded and expiring.
	rdb := srv.Client(t)
	stream := h.keys.userStream("bob")
	if n := rdb.XLen(context.Background(), stream).Val(); n != 1 {
		t.Fatalf("stream length %d, want 1", n)
	}
	if ttl := rdb.PTTL(context.Background(), stream).Val(); ttl <= 0 || ttl > 24*time.Hour {
		t.Fatalf("stream TTL %s, want (0, 24h]", ttl)
	}
}

func TestHistoryIsBoundedByHistorySize(t *testing.T) {
	srv := redistest.Start(t)
	h := startHub(t, srv, func(c *Config) { c.HistorySize = 5; c.HistoryTTL = time.Minute })
	var ids []StreamID
	for i := range 12 {
		ids = append(ids, publish(t, h, "bob", strconv.Itoa(i)))
	}
	hist, err := h.History(context.Background(), "bob", "", 100)
	if err != nil {
		t.Fatal(err)
	}
	checkInOrder(t, hist, ids[7:])
	ttl := srv.Client(t).PTTL(context.Background(), h.keys.userStream("bob")).Val()
	if ttl <= 0 || ttl > time.Minute {
		t.Fatalf("TTL %s, want (0, 1m]", ttl)
	}
}

func TestResumeReplaysExactlyWhatFollowsSince(t *testing.T) {
	srv := redistest.Start(t)
	h := startHub(t, srv, func(c *Config) { c.HistorySize = 50 })
	var ids []StreamID
	for i := range 30 {
		ids = append(ids, publish(t, h, "bob", strconv.Itoa(i)))
	}
	cases := []struct {
		name      string
		since     string
		want      []StreamID
		recovered bool
	}{
		{"from a kept message", ids[9].String(), ids[10:], true},
		{"from the one before the newest", ids[28].String(), ids[29:], true},
		{"from the newest message", ids[29].String(), nil, true},
		{"from the beginning", "0-0", append(ids[:5:5], ids[6:]...), true},
		{"from an id newer than everything", StreamID{MS: ids[29].MS + 1000}.String(), nil, true},
		{"from an id no longer in the stream", ids[5].String(), ids[6:], false},
	}
	// A position that left the stream: what followed it may be gone too.
	srv.Client(t).XDel(context.Background(), h.keys.userStream("bob"), ids[5].String())
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := &sink{}
			_, w := subscribe(t, h, "bob", tc.since, s)
			if w.Recovered == nil || *w.Recovered != tc.recovered {
				t.Fatalf("recovered %v, want %v", w.Recovered, tc.recovered)
			}
			msgs, _ := s.snapshot()
			checkInOrder(t, msgs, tc.want)
		})
	}
}

func TestResumeAfterTrimReportsNotRecovered(t *testing.T) {
	srv := redistest.Start(t)
	h := startHub(t, srv, func(c *Config) { c.HistorySize = 10 })
	var ids []StreamID
	for i := range 25 {
		ids = append(ids, publish(t, h, "bob", strconv.Itoa(i)))
	}
	s := &sink{}
	_, w := subscribe(t, h, "bob", ids[3].String(), s)
	if w.Recovered == nil || *w.Recovered {
		t.Fatalf("recovered %v, want false: ids after since were trimmed", w.Recovered)
	}
	msgs, _ := s.snapshot()
	checkInOrder(t, msgs, ids[15:])
	// 0-0 on a trimmed stream is not recovered either.
	_, w = subscribe(t, h, "bob", "0-0", &sink{})
	if *w.Recovered {
		t.Fatal("0-0 on a trimmed stream: recovered true, want false")
	}
}

func TestLiveMessagesDuringSetupAreNeitherLostNorDuplicated(t *testing.T) {
	srv := redistest.Start(t)
	h := startHub(t, srv)
	var mu sync.Mutex
	var ids []StreamID
	stop := make(chan struct{})
	var g errgroup.Group // the publisher's error comes back to the test's goroutine
	g.Go(func() error {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return nil
			default:
			}
			id, err := h.Publish(context.Background(), "bob", Envelope{Data: []byte(strconv.Itoa(i))})
			if err != nil {
				return fmt.Errorf("publish %d: %w", i, err)
			}
			mu.Lock()
			ids = append(ids, id)
			mu.Unlock()
		}
	})
	// Connections resuming from 0-0 while messages flow: each must see every message, once,
	// in order, across the switch from replay to live.
	var sinks []*sink
	for range 10 {
		testutil.WaitFor(t, 5*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(ids) > 0 }, "first publish")
		s := &sink{}
		subscribe(t, h, "bob", "0-0", s)
		sinks = append(sinks, s)
	}
	close(stop)
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	all := ids
	mu.Unlock()
	for i, s := range sinks {
		testutil.WaitFor(t, 5*time.Second, func() bool { return s.count() == len(all) }, fmt.Sprintf("sink %d to get all %d", i, len(all)))
		msgs, _ := s.snapshot()
		checkInOrder(t, msgs, all)
	}
}

func TestConnectStormCoalescesSubscribes(t *testing.T) {
	srv := redistest.Start(t)
	h := startHub(t, srv)
	rdb := srv.Client(t)
	ctx := context.Background()
	before := subscribeCalls(t, rdb)
	const users = 2000
	var wg sync.WaitGroup
	subs := make([]*Subscription, users)
	for i := range users {
		wg.Go(func() {
			sub, _, err := h.Subscribe(ctx, "u"+strconv.Itoa(i), "", &sink{})
			if err != nil {
				t.Error(err)
				return
			}
			sub.Start()
			subs[i] = sub
		})
	}
	wg.Wait()
	calls := subscribeCalls(t, rdb) - before
	t.Logf("%d users subscribed with %d SUBSCRIBE commands", users, calls)
	if calls > users/10 {
		t.Fatalf("%d SUBSCRIBE commands for %d users: not coalesced", calls, users)
	}
	if n := len(rdb.PubSubChannels(ctx, "{t:*").Val()); n != users {
		t.Fatalf("%d channels subscribed, want %d", n, users)
	}
	for _, s := range subs {
		s.Close()
	}
	testutil.WaitFor(t, 10*time.Second, func() bool { return len(rdb.PubSubChannels(ctx, "{t:*").Val()) == 0 }, "every channel unsubscribed")
	testutil.WaitFor(t, 10*time.Second, func() bool { return h.channelCount() == 0 }, "channel table emptied")
}

// subscribeCalls reads how many SUBSCRIBE commands Redis has run.
func subscribeCalls(t testing.TB, rdb *redis.Client) int {
	info := rdb.Info(context.Background(), "commandstats").Val()
	for _, line := range strings.Split(info, "\n") {
		if rest, ok := strings.CutPrefix(line, "cmdstat_subscribe:calls="); ok {
			n, _ := strconv.Atoi(rest[:strings.IndexByte(rest, ',')])
			return n
		}
	}
	return 0
}

func TestSubscribeRaceWithUnsubscribeKeepsTheChannel(t *testing.T) {
	srv := redistest.Start(t)
	h := startHub(t, srv)
	// Open and close connections of one user in a tight loop, so that subscribes and
	// unsubscribes of the same channel are in flight together; a connection that got its
	// welcome must always receive what is published after.
	for i := range 200 {
		s := &sink{}
		sub, _ := subscribe(t, h, "flip", "", s)
		id := publish(t, h, "flip", strconv.Itoa(i))
		testutil.WaitFor(t, 5*time.Second, func() bool { return s.count() == 1 }, fmt.Sprintf("round %d delivery", i))
		if msgs, _ := s.snapshot(); msgs[0].ID != id {
			t.Fatalf("round %d: got %s want %s", i, msgs[0].ID, id)
		}
		sub.Close()
	}
}

// channelCount counts the channels the hub still tracks on all its links.
func (h *Hub) channelCount() int {
	n := 0
	for _, l := range h.allLinks() {
		l.mu.Lock()
		n += len(l.channels)
		l.mu.Unlock()
	}
	return n
}

func TestOneBadKeyFailsOnlyItsOwnDelivery(t *testing.T) {
	srv := redistest.Start(t)
	h := startHub(t, srv)
	ctx := context.Background()
	rdb := srv.Client(t)
	// An operator's mistake: bad's stream key holds a string.
	if err := rdb.Set(ctx, h.keys.userStream("bad"), "oops", 0).Err(); err != nil {
		t.Fatal(err)
	}
	sinks := map[string]*sink{}
	for _, u := range []string{"good1", "good2"} {
		sinks[u] = &sink{}
		subscribe(t, h, u, "", sinks[u])
	}
	// bad cannot even connect (its history cannot be read); a listener on its channel sees
	// whether anything is published to it.
	bad := rdb.Subscribe(ctx, h.keys.userChannel("bad"))
	defer bad.Close()
	if _, err := bad.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	// A direct message to bad fails and publishes nothing.
	if _, err := h.Publish(ctx, "bad", Envelope{Data: []byte(`1`)}); err == nil {
		t.Fatal("a DM to a user whose stream key holds a string succeeded")
	}
	// In a batch, only bad's message fails.
	ids, errs := h.PublishMany(ctx, []Direct{
		{User: "good1", Envelope: Envelope{Data: []byte(`2`)}},
		{User: "bad", Envelope: Envelope{Data: []byte(`3`)}},
		{User: "good2", Envelope: Envelope{Data: []byte(`4`)}},
	})
	if errs[0] != nil || errs[2] != nil || errs[1] == nil || ids[0].IsZero() || ids[2].IsZero() {
		t.Fatalf("ids %v errs %v: want the good ones stored and bad's refused", ids, errs)
	}
	// In a room, bad is skipped and not counted.
	for _, u := range []string{"good1", "bad", "good2"} {
		if _, err := h.Join(ctx, "r", u); err != nil {
			t.Fatal(err)
		}
	}
	n, err := h.PublishRoom(ctx, "r", Envelope{Data: []byte(`5`)}, false)
	if err != nil || n != 2 {
		t.Fatalf("room fan-out: %d recipients, %v; want 2", n, err)
	}
	for _, u := range []string{"good1", "good2"} {
		testutil.WaitFor(t, 5*time.Second, func() bool { return sinks[u].count() == 2 }, u+"'s two messages")
	}
	if v := rdb.Get(ctx, h.keys.userStream("bad")).Val(); v != "oops" {
		t.Fatalf("bad's key was changed to %q", v)
	}
	// Nothing was published to bad: the next thing on its channel is what we publish now.
	if err := rdb.Publish(ctx, h.keys.userChannel("bad"), "marker").Err(); err != nil {
		t.Fatal(err)
	}
	if m, err := bad.ReceiveMessage(ctx); err != nil || m.Payload != "marker" {
		t.Fatalf("bad's channel carried %v %v before the marker", m, err)
	}
}
