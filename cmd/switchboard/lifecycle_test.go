package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/internal/redistest"
	"github.com/switchboard-dev/switchboard/internal/testutil"
	"github.com/switchboard-dev/switchboard/internal/wsclient"
)

// nodeGoroutines returns the stacks of running goroutines with a frame in the node's parts
// or the libraries they start goroutines in.
func nodeGoroutines() []string {
	return testutil.Goroutines(
		"github.com/switchboard-dev/switchboard/service.",
		"github.com/switchboard-dev/switchboard/subscriptions.",
		"github.com/switchboard-dev/switchboard/events.",
		"github.com/redis/go-redis/v9.",
		"github.com/lxzan/gws.",
		"net/http.(*Server).Serve",
	)
}

// pubsubClients counts the Pub/Sub connections Redis holds for node.
func pubsubClients(t *testing.T, srv *redistest.Server, node string) int {
	t.Helper()
	list, err := srv.Client(t).ClientList(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(list, "\n") {
		if strings.Contains(line, "name=switchboard-"+node+" ") && !strings.Contains(line, " sub=0 ") {
			n++
		}
	}
	return n
}

func TestRunStopsThePartsInOrderAndLeavesNoGoroutine(t *testing.T) {
	if left := nodeGoroutines(); len(left) > 0 {
		t.Fatalf("goroutines of an earlier node still run:\n%s", strings.Join(left, "\n\n"))
	}
	srv := redistest.Start(t)
	addr := freeAddr(t)
	cfg, err := parseConfig([]string{"--addr", addr, "--redis", srv.URL(), "--node-id", "n1"}, noEnv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	log := &testutil.LockedBuffer{}
	n, err := build(cfg, slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	var steps []string
	n.beforeStep = func(step string) {
		steps = append(steps, step)
		switch step {
		case stepStopParts: // the server has drained; the hub still holds its subscriptions
			if _, err := http.Get("http://" + addr + "/healthz"); err == nil {
				t.Errorf("before %q: the listener still accepts", step)
			}
			if pubsubClients(t, srv, "n1") == 0 {
				t.Errorf("before %q: the hub's subscriptions were released before the server drained", step)
			}
		case stepCloseRedis: // the hub and the queue have stopped; Redis still answers
			if c := pubsubClients(t, srv, "n1"); c != 0 {
				t.Errorf("before %q: %d Pub/Sub connections still open", step, c)
			}
			if nodes, err := n.hub.Nodes(context.Background()); err != nil || len(nodes) != 0 {
				t.Errorf("before %q: registry %v (%v): the hub had not left it", step, nodes, err)
			}
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.run(ctx) }()
	testutil.WaitFor(t, 10*time.Second, func() bool {
		res, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	}, "the node ready")
	bob, err := wsclient.Dial("ws://"+addr+"/ws?user=bob", wsclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer bob.Close()
	if f, err := bob.NextWithin(10 * time.Second); err != nil || f.Type != "welcome" {
		t.Fatalf("welcome: %s %v", f.Raw, err)
	}
	if len(nodeGoroutines()) == 0 {
		t.Fatal("no goroutine of the node found while it runs: the check below would prove nothing")
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run returned %v, want nil", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not return")
	}
	if want := []string{stepStopParts, stepCloseRedis}; !slices.Equal(steps, want) {
		t.Fatalf("shutdown steps %q, want %q", steps, want)
	}
	if code, _ := bob.CloseCode(); code != 1012 {
		t.Errorf("bob's WebSocket closed with %d, want 1012", code)
	}
	if err := n.rdb.Ping(context.Background()).Err(); err == nil {
		t.Error("Redis is still open after run returned")
	}
	// go-redis's pool reaper and the like end just after Close returns: poll.
	testutil.WaitFor(t, 5*time.Second, func() bool { return len(nodeGoroutines()) == 0 }, "no goroutine of the node left")
	if t.Failed() {
		t.Logf("run's log:\n%s", log.String())
	}
}
