package events

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/internal/redistest"
	"github.com/switchboard-dev/switchboard/internal/testutil"
	"github.com/switchboard-dev/switchboard/subscriptions"
)

// liveNodes is a registry whose live nodes the test sets.
type liveNodes struct {
	mu    sync.Mutex
	nodes []string
	calls int
}

func (l *liveNodes) Nodes(context.Context) ([]subscriptions.NodeInfo, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls++
	var out []subscriptions.NodeInfo
	for _, n := range l.nodes {
		out = append(out, subscriptions.NodeInfo{Node: n})
	}
	return out, nil
}

func (l *liveNodes) checks() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.calls
}

func TestTheJanitorClearsEveryKindOfGoneNodeAndNoLiveOne(t *testing.T) {
	t.Parallel()
	recv := newReceiver(t, nil)
	rdb := newRedis(t, redistest.Start(t))
	q := newQueue(t, rdb, Config{Node: "me", URL: recv.url()})
	start(t, q)
	p, ctx := q.Presence(), context.Background()
	for _, c := range []struct{ user, node string }{
		{"ann", "me"},       // left by this node's previous process
		{"bob", "reported"}, // its registry entry expired: the registry reports it
		{"cid", "silent"},   // died before it announced: only the sweep finds it
		{"dan", "alive"},    // a live node: stays
	} {
		if err := p.Connected(ctx, c.user, c.node, "c1"); err != nil {
			t.Fatal(err)
		}
	}
	j := p.Janitor()
	j.interval = 10 * time.Millisecond

	j.NodeGone(ctx, "reported")
	if n := online(t, p, "bob"); n != 0 {
		t.Fatalf("bob has %d connections after his node was reported gone", n)
	}

	reg := &liveNodes{nodes: []string{"alive"}}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- j.Run(runCtx, reg) }()
	testutil.WaitFor(t, 5*time.Second, func() bool { return online(t, p, "ann") == 0 }, "this node's old counts cleared at start")
	testutil.WaitFor(t, 5*time.Second, func() bool { return online(t, p, "cid") == 0 }, "the silent node's counts cleared")
	// Two more checks: a live node is never taken for a gone one.
	after := reg.checks()
	testutil.WaitFor(t, 5*time.Second, func() bool { return reg.checks() >= after+2 }, "two more checks")
	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run returned %v when its context ended, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return when its context ended")
	}
	if n := online(t, p, "dan"); n != 1 {
		t.Fatalf("dan, on a live node, has %d connections, want 1", n)
	}
	if nodes, err := p.Nodes(ctx); err != nil || !slices.Equal(nodes, []string{"alive"}) {
		t.Fatalf("nodes with counts %v (%v), want only alive", nodes, err)
	}
	testutil.WaitFor(t, 5*time.Second, func() bool { return recv.distinct() == 4+3 }, "4 online and 3 offline events")
	events, _ := recv.got()
	for _, u := range []string{"ann", "bob", "cid"} {
		if got := typesOf(events, u); !slices.Equal(got, []Type{UserOnline, UserOffline}) {
			t.Errorf("%s's events %v, want online then offline", u, got)
		}
	}
}
