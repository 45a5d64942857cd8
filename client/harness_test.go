package client_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard-dev/switchboard/client"
	"github.com/switchboard-dev/switchboard/events"
	"github.com/switchboard-dev/switchboard/internal/redistest"
	"github.com/switchboard-dev/switchboard/internal/testutil"
	"github.com/switchboard-dev/switchboard/internal/wsclient"
	"github.com/switchboard-dev/switchboard/service"
	"github.com/switchboard-dev/switchboard/subscriptions"
)

const apiKey = "test-key"

// server is a real Switchboard node on a real socket, on a redis-server of its own.
type server struct {
	base  string
	redis *redistest.Server
}

// startServer runs a node in dev mode with apiKey, payloads of at most 64 bytes and one room
// per user, so that every refusal is easy to provoke.
func startServer(t *testing.T) *server {
	t.Helper()
	rs := redistest.Start(t)
	opts, err := redis.ParseURL(rs.URL())
	if err != nil {
		t.Fatal(err)
	}
	opts.MaxRetries = -1 // as main builds it: a retried script could run twice
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { _ = rdb.Close() })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	queue, err := events.New(rdb, events.Config{Node: "n1", Prefix: "c", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	hub, err := subscriptions.New(rdb, subscriptions.Config{Node: "n1", Prefix: "c", Logger: log, MaxRoomsPerUser: 1,
		OnNodeGone: queue.Presence().Janitor().NodeGone})
	if err != nil {
		t.Fatal(err)
	}
	srv := service.New(hub, service.Config{APIKey: apiKey, MaxMessageBytes: 64, Events: queue, Logger: log})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	hubCtx, stopHub := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = queue.Run(hubCtx) })
	wg.Go(func() { _ = hub.Run(hubCtx) })
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(ctx, ln)
	}()
	t.Cleanup(func() {
		cancel()
		<-served
		stopHub()
		wg.Wait()
	})
	testutil.WaitFor(t, 10*time.Second, func() bool { return hub.Ready() == nil }, "node ready")
	return &server{base: "http://" + ln.Addr().String(), redis: rs}
}

// newClient is a client of s with the right key; opts come after it and may replace it.
func (s *server) newClient(t *testing.T, opts ...client.Option) *client.Client {
	t.Helper()
	c, err := client.New(s.base, append([]client.Option{client.WithAPIKey(apiKey)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// connect opens a WebSocket as user and reads its welcome.
func (s *server) connect(t *testing.T, user string) *wsclient.Conn {
	t.Helper()
	c, err := wsclient.Dial("ws"+strings.TrimPrefix(s.base, "http")+"/ws?"+url.Values{"user": {user}}.Encode(), wsclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	if f, err := c.NextWithin(10 * time.Second); err != nil || f.Type != "welcome" {
		t.Fatalf("welcome of %s: %+v %v", user, f, err)
	}
	return c
}

// counter is a transport that counts the requests it carries, by method.
type counter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *counter) RoundTrip(r *http.Request) (*http.Response, error) {
	c.mu.Lock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[r.Method]++
	c.mu.Unlock()
	return http.DefaultTransport.RoundTrip(r)
}

// take returns the counts so far and starts again from zero.
func (c *counter) take() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.n
	c.n = nil
	return n
}
