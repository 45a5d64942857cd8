package events

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/internal/redistest"
	"github.com/switchboard-dev/switchboard/internal/testutil"
)

// typesOf returns the types of user's events, first occurrences in order of arrival.
func typesOf(events []Event, user string) []Type {
	var out []Type
	for _, e := range events {
		if e.User == user {
			out = append(out, e.Type)
		}
	}
	return out
}

func online(t testing.TB, p *Presence, user string) int {
	t.Helper()
	n, err := p.Online(context.Background(), user)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestOnlineOfflineAcrossDevicesAndNodes(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	// Every other request fails, so batches are retried while both nodes send and the
	// shards move between them: order must hold anyway.
	recv := newReceiver(t, func(n int) reply {
		if n%2 == 0 {
			return reply{status: http.StatusServiceUnavailable}
		}
		return reply{}
	})
	n1 := newQueue(t, newRedis(t, srv), Config{Node: "n1", URL: recv.url()})
	n2 := newQueue(t, newRedis(t, srv), Config{Node: "n2", URL: recv.url()})
	stops := map[string]func() time.Duration{"n1": start(t, n1), "n2": start(t, n2)}
	testutil.WaitFor(t, 10*time.Second, func() bool {
		a, b := n1.Stats().Shards, n2.Stats().Shards
		return a > 0 && b > 0 && a+b == 16
	}, "both nodes sending")
	p1, p2 := n1.Presence(), n2.Presence()
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}

	const cycles = 20
	for i := range cycles {
		if i == cycles/2 {
			// The node sending bob's shard leaves with its batch perhaps failed and pending:
			// the other one takes the shard over and must keep the order.
			owner, err := n1.rdb.Get(ctx, n1.keys.owner(n1.keys.shard("bob"))).Result()
			must(err)
			stops[owner[:2]]()
		}
		before := recv.requestCount()
		c := strconv.Itoa(i)
		must(p1.Connected(ctx, "bob", "n1", "phone-"+c))
		must(p2.Connected(ctx, "bob", "n2", "laptop-"+c))
		if n := online(t, p1, "bob"); n != 2 {
			t.Fatalf("cycle %d: %d connections, want 2", i, n)
		}
		must(p1.Disconnected(ctx, "bob", "n1", "phone-"+c))
		must(p2.Disconnected(ctx, "bob", "n2", "laptop-"+c))
		// Let requests (and failures) happen between cycles rather than one batch at the end.
		testutil.WaitFor(t, 10*time.Second, func() bool { return recv.requestCount() > before }, "a request")
	}
	if n := online(t, p1, "bob"); n != 0 {
		t.Fatalf("%d connections left", n)
	}
	testutil.WaitFor(t, 20*time.Second, func() bool { return recv.distinct() == 2*cycles }, "every online and offline")
	events, _ := recv.got()
	got := typesOf(events, "bob")
	for i, typ := range got {
		want := UserOnline
		if i%2 == 1 {
			want = UserOffline
		}
		if typ != want {
			t.Fatalf("bob's events arrived as %v: want online, offline, ... in order", got)
		}
	}
	if st1, st2 := n1.Stats(), n2.Stats(); st1.Queued+st2.Queued != 2*cycles {
		t.Errorf("queued %d + %d", st1.Queued, st2.Queued)
	}
	t.Logf("%d events in order through %d requests (half failed); n1 %+v; n2 %+v", len(got), recv.requestCount(), n1.Stats(), n2.Stats())
}

func TestPresenceCallsAreSafeToRepeat(t *testing.T) {
	t.Parallel()
	recv := newReceiver(t, nil)
	q := newQueue(t, newRedis(t, redistest.Start(t)), Config{Node: "n1", URL: recv.url()})
	start(t, q)
	p, ctx := q.Presence(), context.Background()
	for range 3 { // as after answers lost to timeouts
		if err := p.Connected(ctx, "bob", "n1", "c1"); err != nil {
			t.Fatal(err)
		}
	}
	if n := online(t, p, "bob"); n != 1 {
		t.Errorf("%d connections after a repeated Connected", n)
	}
	if err := p.Disconnected(ctx, "bob", "n1", "never-connected"); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := p.Disconnected(ctx, "bob", "n1", "c1"); err != nil {
			t.Fatal(err)
		}
	}
	testutil.WaitFor(t, 5*time.Second, func() bool { return recv.distinct() == 2 }, "online and offline")
	// Nothing more comes: the repeats queued nothing.
	if st := q.Stats(); st.Queued != 2 {
		t.Errorf("queued %d events, want 2", st.Queued)
	}
	events, _ := recv.got()
	if got := typesOf(events, "bob"); !slices.Equal(got, []Type{UserOnline, UserOffline}) {
		t.Errorf("events %v", got)
	}
	for _, bad := range [][3]string{{"", "n1", "c"}, {"bob", "", "c"}, {"bob", "n/1", "c"}, {"b b", "n1", "c"}, {"bob", "n1", ""}} {
		if err := p.Connected(ctx, bad[0], bad[1], bad[2]); err == nil {
			t.Errorf("Connected%q accepted", bad)
		}
	}
}

func TestNodeGoneTakesOnlyItsLastConnectionsOffline(t *testing.T) {
	t.Parallel()
	recv := newReceiver(t, nil)
	q := newQueue(t, newRedis(t, redistest.Start(t)), Config{Node: "n2", URL: recv.url(), Shards: 4})
	start(t, q)
	p, ctx := q.Presence(), context.Background()
	conns := []struct{ user, node, conn string }{
		{"alice", "n1", "a"},                     // only on the dead node
		{"bob", "n1", "b1"}, {"bob", "n2", "b2"}, // also elsewhere
		{"carol", "n2", "c"},                       // never on the dead node
		{"dave", "n1", "d1"}, {"dave", "n1", "d2"}, // two devices, both on the dead node
	}
	for _, c := range conns {
		if err := p.Connected(ctx, c.user, c.node, c.conn); err != nil {
			t.Fatal(err)
		}
	}
	// Enough users on the dead node that each shard needs several cleanup steps.
	many := users(450)
	for _, u := range many {
		if err := p.Connected(ctx, u, "n1", "x"); err != nil {
			t.Fatal(err)
		}
	}
	if nodes, err := p.Nodes(ctx); err != nil || !slices.Equal(nodes, []string{"n1", "n2"}) {
		t.Fatalf("nodes %v, %v", nodes, err)
	}

	n, err := p.NodeGone(ctx, "n1")
	if err != nil || n != 2+len(many) {
		t.Fatalf("NodeGone: %d offline, %v; want %d", n, err, 2+len(many))
	}
	if n, err := p.NodeGone(ctx, "n1"); err != nil || n != 0 {
		t.Errorf("NodeGone again: %d offline, %v", n, err)
	}
	for user, want := range map[string]int{"alice": 0, "bob": 1, "carol": 1, "dave": 0, "u7": 0} {
		if got := online(t, p, user); got != want {
			t.Errorf("%s: %d connections, want %d", user, got, want)
		}
	}
	if nodes, err := p.Nodes(ctx); err != nil || !slices.Equal(nodes, []string{"n2"}) {
		t.Errorf("nodes %v, %v", nodes, err)
	}
	// The dead node's late goodbye changes nothing; bob's last real one does.
	if err := p.Disconnected(ctx, "bob", "n1", "b1"); err != nil {
		t.Fatal(err)
	}
	if err := p.Disconnected(ctx, "bob", "n2", "b2"); err != nil {
		t.Fatal(err)
	}

	want := 4 + len(many) + 3 // online: alice bob carol dave + many; offline: alice dave + many, then bob
	testutil.WaitFor(t, 10*time.Second, func() bool { return recv.distinct() == want+len(many) }, "every event")
	events, _ := recv.got()
	for user, want := range map[string][]Type{
		"alice": {UserOnline, UserOffline},
		"bob":   {UserOnline, UserOffline},
		"carol": {UserOnline},
		"dave":  {UserOnline, UserOffline},
		"u123":  {UserOnline, UserOffline},
	} {
		if got := typesOf(events, user); !slices.Equal(got, want) {
			t.Errorf("%s: events %v, want %v", user, got, want)
		}
	}
	for _, e := range events {
		if e.Type != UserOffline {
			continue
		}
		fromDead := e.User != "bob"
		if fromDead != (e.Reason == ReasonNodeGone) || fromDead != (e.Node == "n1") {
			t.Errorf("offline event %+v", e)
		}
	}
}

func TestPresenceWithoutWebhookCountsButQueuesNothing(t *testing.T) {
	t.Parallel()
	q := newQueue(t, newRedis(t, redistest.Start(t)), Config{Node: "n1"})
	start(t, q)
	p, ctx := q.Presence(), context.Background()
	if err := p.Connected(ctx, "bob", "n1", "c1"); err != nil {
		t.Fatal(err)
	}
	if err := q.Emit(ctx, clientEvent("bob", 1)); err != nil {
		t.Fatal(err)
	}
	if err := q.Emit(ctx, Event{Type: ClientEvent, User: "bob"}); err == nil {
		t.Error("a malformed event was accepted without a webhook")
	}
	if n := online(t, p, "bob"); n != 1 {
		t.Errorf("%d connections", n)
	}
	if n, err := p.NodeGone(ctx, "n1"); err != nil || n != 1 {
		t.Errorf("NodeGone: %d, %v", n, err)
	}
	if b, err := q.Backlog(ctx); err != nil || b != 0 || q.Stats().Queued != 0 {
		t.Errorf("backlog %d, %v, stats %+v", b, err, q.Stats())
	}
}
