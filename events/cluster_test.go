package events

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard-dev/switchboard/internal/redistest"
	"github.com/switchboard-dev/switchboard/internal/testutil"
)

func TestWorksOnRedisCluster(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t, 3)
	newCluster := func() *redis.ClusterClient {
		rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs(), MaxRetries: -1, ContextTimeoutEnabled: true})
		t.Cleanup(func() { _ = rdb.Close() })
		return rdb
	}
	recv := newReceiver(t, nil)
	a := newQueue(t, newCluster(), Config{Node: "a", URL: recv.url()})
	b := newQueue(t, newCluster(), Config{Node: "b", URL: recv.url()})
	ctx := context.Background()

	// The shards must not share one hot slot or node.
	masters := map[string]bool{}
	for s := range a.cfg.Shards {
		m, err := a.rdb.(*redis.ClusterClient).MasterForKey(ctx, a.keys.stream(s))
		if err != nil {
			t.Fatal(err)
		}
		masters[m.Options().Addr] = true
	}
	if len(masters) != 3 {
		t.Errorf("the 16 shards live on %d of 3 masters", len(masters))
	}

	start(t, a)
	start(t, b)
	emitN(t, a, users(50), 300)
	pa, pb := a.Presence(), b.Presence()
	for i := range 20 {
		u := "p" + strconv.Itoa(i)
		for _, step := range []func() error{
			func() error { return pa.Connected(ctx, u, "a", "1") },
			func() error { return pb.Connected(ctx, u, "b", "1") },
			func() error { return pb.Disconnected(ctx, u, "b", "1") },
		} {
			if err := step(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if n, err := pb.NodeGone(ctx, "a"); err != nil || n != 20 {
		t.Fatalf("NodeGone: %d, %v", n, err)
	}
	testutil.WaitFor(t, 15*time.Second, func() bool { return recv.distinct() == 300+40 }, "every event")
	events, _ := recv.got()
	checkOrder(t, events)
	if nodes, err := pa.Nodes(ctx); err != nil || len(nodes) != 0 {
		t.Errorf("nodes %v, %v", nodes, err)
	}
	testutil.WaitFor(t, 5*time.Second, func() bool { l, p := pending(t, a); return l == 0 && p == 0 }, "queue empty")
}
