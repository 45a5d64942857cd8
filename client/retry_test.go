package client_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/client"
)

// flaky stands in front of a server and answers the first request of each method and path
// with 503 (and Retry-After: 1), as a restarting node or a load balancer would; later ones
// pass through.
type flaky struct {
	mu    sync.Mutex
	seen  map[string]bool
	proxy *httputil.ReverseProxy
}

func (f *flaky) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	first := !f.seen[r.Method+" "+r.URL.Path]
	f.seen[r.Method+" "+r.URL.Path] = true
	f.mu.Unlock()
	if first {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"error":{"code":"unavailable","message":"try again"}}`))
		return
	}
	f.proxy.ServeHTTP(w, r)
}

func TestRetriesOnlyIdempotentCalls(t *testing.T) {
	s := startServer(t)
	target, err := url.Parse(s.base)
	must(t, err)
	front := httptest.NewServer(&flaky{seen: map[string]bool{}, proxy: httputil.NewSingleHostReverseProxy(target)})
	t.Cleanup(front.Close)
	var tr counter
	c, err := client.New(front.URL, client.WithAPIKey(apiKey), client.WithHTTPClient(&http.Client{Transport: &tr}),
		client.WithRetries(2, time.Millisecond))
	must(t, err)
	ctx := context.Background()

	start := time.Now()
	if _, err := c.Members(ctx, "lobby"); err != nil {
		t.Fatalf("a GET after one 503: %v", err)
	}
	if n := tr.take(); n["GET"] != 2 {
		t.Fatalf("GET attempts %v, want 2", n)
	}
	if d := time.Since(start); d < time.Second {
		t.Fatalf("the retry came after %s, before the answer's Retry-After of 1s", d)
	}
	must(t, c.AddMember(ctx, "lobby", "bob"))
	if n := tr.take(); n["PUT"] != 2 {
		t.Fatalf("PUT attempts %v, want 2", n)
	}

	_, err = c.SendToUser(ctx, "bob", client.Text("once"))
	var e *client.Error
	if !errors.As(err, &e) || e.Status != http.StatusServiceUnavailable || e.Code != client.CodeUnavailable || e.RetryAfter != time.Second || !e.Temporary() {
		t.Fatalf("a POST answered 503: %v", err)
	}
	_, err = c.SendToRoom(ctx, "lobby", client.Text("once"))
	if !errors.As(err, &e) || e.Status != http.StatusServiceUnavailable {
		t.Fatalf("a room POST answered 503: %v", err)
	}
	_, err = c.SendBatch(ctx, []client.BatchItem{{User: "bob", Data: []byte(`1`)}})
	if !errors.As(err, &e) || e.Status != http.StatusServiceUnavailable {
		t.Fatalf("a batch answered 503: %v", err)
	}
	if n := tr.take(); n["POST"] != 3 {
		t.Fatalf("POST attempts %v, want 3: one per send, never retried", n)
	}
	direct := s.newClient(t)
	if msgs, err := direct.Messages(ctx, "bob", "", 0); err != nil || len(msgs) != 0 {
		t.Fatalf("after sends refused by 503: %+v %v", msgs, err)
	}
}

// TestRedisDownRetriesReadsOnly: with the node's Redis gone, a read is tried 1+retries times
// and gives up with 503 unavailable; a send is tried once.
func TestRedisDownRetriesReadsOnly(t *testing.T) {
	s := startServer(t)
	var tr counter
	c := s.newClient(t, client.WithHTTPClient(&http.Client{Transport: &tr}), client.WithRetries(3, time.Millisecond))
	ctx := context.Background()
	s.redis.Stop()

	calls := []struct {
		method string
		call   func() error
		tries  int
	}{
		{"GET", func() error { _, err := c.Presence(ctx, "bob"); return err }, 4},
		{"GET", func() error { _, err := c.Messages(ctx, "bob", "", 0); return err }, 4},
		{"PUT", func() error { return c.AddMember(ctx, "lobby", "bob") }, 4},
		{"DELETE", func() error { return c.RemoveMember(ctx, "lobby", "bob") }, 4},
		{"POST", func() error { _, err := c.SendToUser(ctx, "bob", client.Text("x")); return err }, 1},
		{"POST", func() error { _, err := c.SendToRoom(ctx, "lobby", client.Text("x")); return err }, 1},
		{"GET", func() error { _, err := c.RoomMessages(ctx, "lobby", client.RoomQuery{}); return err }, 4},
		{"GET", func() error { _, err := c.RoomPresence(ctx, "lobby"); return err }, 4},
		{"POST", func() error { _, err := c.SendToUser(ctx, "bob", client.Text("x"), client.Ephemeral()); return err }, 1},
		{"POST", func() error { _, err := c.SendToRoom(ctx, "lobby", client.Text("x"), client.Ephemeral()); return err }, 1},
	}
	for _, tc := range calls {
		err := tc.call()
		var e *client.Error
		if !errors.As(err, &e) || e.Status != http.StatusServiceUnavailable || e.Code != client.CodeUnavailable {
			t.Errorf("%s with Redis down: %v", tc.method, err)
		}
		if n := tr.take(); n[tc.method] != tc.tries || len(n) != 1 {
			t.Errorf("%s with Redis down: attempts %v, want %d", tc.method, n, tc.tries)
		}
	}
}

func TestRetriesStopWithTheContext(t *testing.T) {
	var tr counter
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Retry-After", "60")
		http.Error(w, "bad gateway", http.StatusBadGateway)
	}))
	t.Cleanup(down.Close)
	c, err := client.New(down.URL, client.WithHTTPClient(&http.Client{Transport: &tr}))
	must(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = c.Rooms(ctx, "bob")
	var e *client.Error
	if !errors.As(err, &e) || e.Status != http.StatusBadGateway || e.Code != "" || e.Message != "bad gateway" {
		t.Fatalf("behind a failing proxy: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("waited %s past the context's end", d)
	}
	if n := tr.take(); n["GET"] != 1 {
		t.Fatalf("attempts %v, want 1: the Retry-After wait outlasted the context", n)
	}
}
