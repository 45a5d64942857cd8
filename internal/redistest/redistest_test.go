package redistest_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard-dev/switchboard/internal/redistest"
	"github.com/switchboard-dev/switchboard/internal/testutil"
)

func TestServerStoresAndReturnsAValue(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := redistest.Start(t)
	if !strings.HasPrefix(srv.Addr(), "127.0.0.1:") || srv.Addr() == "127.0.0.1:6379" {
		t.Fatalf("Addr() = %q, want a free loopback port", srv.Addr())
	}
	if want := "redis://" + srv.Addr() + "/0"; srv.URL() != want {
		t.Fatalf("URL() = %q, want %q", srv.URL(), want)
	}
	if _, err := redis.ParseURL(srv.URL()); err != nil {
		t.Fatalf("go-redis cannot parse URL(): %v", err)
	}

	rdb := srv.Client(t)
	if err := rdb.Set(ctx, "greeting", "hello", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	if got, err := rdb.Get(ctx, "greeting").Result(); err != nil || got != "hello" {
		t.Fatalf("GET = %q, %v; want hello", got, err)
	}
}

func TestServerComesBackOnTheSamePortAfterStop(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := redistest.Start(t)
	addr := srv.Addr()
	rdb := srv.Client(t)
	if err := rdb.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}

	srv.Stop()
	srv.Stop() // a second Stop is a no-op
	if err := rdb.Ping(ctx).Err(); err == nil {
		t.Fatal("PING succeeded against a stopped server")
	}

	srv.Restart(t)
	if srv.Addr() != addr {
		t.Fatalf("Addr() after Restart = %s, want %s", srv.Addr(), addr)
	}
	// The same client reconnects; the data went with the process.
	testutil.Eventually(t, 5*time.Second, func() error { return rdb.Ping(ctx).Err() })
	if err := rdb.Get(ctx, "k").Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("GET after restart: err = %v, want redis.Nil", err)
	}
}

func TestFrozenServerDoesNotAnswerUntilThawed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{
		Addr:        srv.Addr(),
		ReadTimeout: 200 * time.Millisecond,
		MaxRetries:  -1,
	})
	t.Cleanup(func() { rdb.Close() })
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING: %v", err)
	}

	srv.Freeze()
	var nerr net.Error
	if err := rdb.Ping(ctx).Err(); !errors.As(err, &nerr) || !nerr.Timeout() {
		t.Fatalf("PING while frozen: err = %v, want a timeout", err)
	}

	srv.Thaw()
	testutil.Eventually(t, 5*time.Second, func() error { return rdb.Ping(ctx).Err() })
}

func TestCleanupKillsAFrozenServer(t *testing.T) {
	t.Parallel()
	var addr string
	t.Run("left frozen", func(t *testing.T) {
		srv := redistest.Start(t)
		addr = srv.Addr()
		srv.Freeze()
	})
	// A frozen server still accepts connections in the kernel; a killed one refuses them.
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		conn.Close()
		t.Fatalf("%s still accepts connections after the subtest's cleanup", addr)
	}
}

func TestKillPubSubClientsDropsSubscribers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := redistest.Start(t)
	rdb := srv.Client(t)

	sub := rdb.Subscribe(ctx, "news")
	t.Cleanup(func() { sub.Close() })
	// Receive waits for the subscription to be confirmed. Nothing reads from
	// sub afterwards, so go-redis does not reconnect behind the test's back.
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	pubsubClients := func() int {
		list, err := rdb.Do(ctx, "CLIENT", "LIST", "TYPE", "pubsub").Text()
		if err != nil {
			t.Fatalf("CLIENT LIST TYPE pubsub: %v", err)
		}
		return len(strings.FieldsFunc(list, func(r rune) bool { return r == '\n' }))
	}
	if n := pubsubClients(); n != 1 {
		t.Fatalf("before kill: %d pubsub clients, want 1", n)
	}

	srv.KillPubSubClients(t)
	testutil.Eventually(t, 5*time.Second, func() error {
		if n := pubsubClients(); n != 0 {
			return fmt.Errorf("%d pubsub clients remain", n)
		}
		return nil
	})
}

func TestClusterServesKeysFromEveryMaster(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	start := time.Now()
	cluster := redistest.StartCluster(t, 3)
	t.Logf("cluster of 3 ready in %v", time.Since(start))

	if got := len(cluster.Addrs()); got != 3 {
		t.Fatalf("Addrs() has %d nodes, want 3", got)
	}
	rdb := cluster.Client(t)
	keys := []string{"{a}x", "{b}x", "{c}x"}
	for _, k := range keys {
		if err := rdb.Set(ctx, k, "v-"+k, 0).Err(); err != nil {
			t.Fatalf("SET %s: %v", k, err)
		}
	}
	for _, k := range keys {
		if got, err := rdb.Get(ctx, k).Result(); err != nil || got != "v-"+k {
			t.Fatalf("GET %s = %q, %v; want %q", k, got, err, "v-"+k)
		}
	}

	var holding atomic.Int32
	err := rdb.ForEachMaster(ctx, func(ctx context.Context, master *redis.Client) error {
		n, err := master.DBSize(ctx).Result()
		if n > 0 {
			holding.Add(1)
		}
		return err
	})
	if err != nil {
		t.Fatalf("ForEachMaster: %v", err)
	}
	if holding.Load() < 2 {
		t.Fatalf("keys landed on %d master(s), want them spread over at least 2", holding.Load())
	}

	// Each node is an ordinary Server, so per-shard failures can be injected.
	cluster.Node(0).KillPubSubClients(t)
}
