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

	// Sends carry an Idempotency-Key, so they are retried too, and delivered once.
	if _, err := c.SendToUser(ctx, "bob", client.Text("once")); err != nil {
		t.Fatalf("a DM after one 503: %v", err)
	}
	if _, err := c.SendToRoom(ctx, "lobby", client.Text("once")); err != nil {
		t.Fatalf("a room send after one 503: %v", err)
	}
	if _, err := c.SendBatch(ctx, []client.BatchItem{{User: "bob", Data: []byte(`1`)}}); err != nil {
		t.Fatalf("a batch after one 503: %v", err)
	}
	if n := tr.take(); n["POST"] != 6 {
		t.Fatalf("POST attempts %v, want 6: each send once refused, once accepted", n)
	}
	direct := s.newClient(t)
	if msgs, err := direct.Messages(ctx, "bob", "", 0); err != nil || len(msgs) != 3 {
		t.Fatalf("after sends retried once each: %+v %v", msgs, err)
	}
	_, err = c.SendToUser(ctx, "carol", client.Text("eph"), client.Ephemeral()) // a path not seen yet: refused once
	var e *client.Error
	if !errors.As(err, &e) || e.Status != http.StatusServiceUnavailable || e.Code != client.CodeUnavailable || e.RetryAfter != time.Second || !e.Temporary() {
		t.Fatalf("an ephemeral POST answered 503: %v", err)
	}
	if n := tr.take(); n["POST"] != 1 {
		t.Fatalf("ephemeral POST attempts %v, want 1: never retried", n)
	}
}

// loseFirst forwards every request but answers the first POST with a network error after
// the server handled it: a send whose answer was lost. It keeps each POST's key.
type loseFirst struct {
	mu   sync.Mutex
	keys []string
}

func (l *loseFirst) RoundTrip(r *http.Request) (*http.Response, error) {
	res, err := http.DefaultTransport.RoundTrip(r)
	if r.Method != http.MethodPost {
		return res, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.keys = append(l.keys, r.Header.Get("Idempotency-Key"))
	if len(l.keys) == 1 && err == nil {
		res.Body.Close()
		return nil, errors.New("connection reset (the test lost the answer)")
	}
	return res, err
}

// TestSendWhoseAnswerWasLostIsDeliveredOnce: the client retries a send whose answer it did
// not get with the same key, and the server delivers it once and answers the first id.
func TestSendWhoseAnswerWasLostIsDeliveredOnce(t *testing.T) {
	s := startServer(t)
	lose := &loseFirst{}
	c := s.newClient(t, client.WithHTTPClient(&http.Client{Transport: lose}), client.WithRetries(2, time.Millisecond))
	ctx := context.Background()
	id, err := c.SendToUser(ctx, "bob", client.Text("once"))
	if err != nil {
		t.Fatalf("a send whose answer was lost: %v", err)
	}
	if len(lose.keys) != 2 || lose.keys[0] == "" || lose.keys[0] != lose.keys[1] {
		t.Fatalf("the attempts' keys: %q, want one key twice", lose.keys)
	}
	msgs, err := s.newClient(t).Messages(ctx, "bob", "", 0)
	if err != nil || len(msgs) != 1 || msgs[0].ID != id {
		t.Fatalf("bob's stream after a retried send: %+v %v (id %s)", msgs, err, id)
	}
	if _, err := c.SendToUser(ctx, "bob", client.Text("twice")); err != nil || len(lose.keys) != 3 || lose.keys[2] == lose.keys[0] {
		t.Fatalf("a second send: %v, keys %q (want a new key)", err, lose.keys)
	}
}

// TestNoRetriesNoKeys: a client that never retries sends no Idempotency-Key (it would only
// cost the deployment a record per send); the first lost answer is its caller's to handle.
func TestNoRetriesNoKeys(t *testing.T) {
	s := startServer(t)
	lose := &loseFirst{}
	c := s.newClient(t, client.WithHTTPClient(&http.Client{Transport: lose}), client.WithRetries(0, 0))
	ctx := context.Background()
	if _, err := c.SendToUser(ctx, "bob", client.Text("lost")); err == nil {
		t.Fatal("a send whose answer was lost succeeded without retries")
	}
	if _, err := c.SendToRoom(ctx, "lobby", client.Text("x")); err != nil {
		t.Fatalf("room send: %v", err)
	}
	if _, err := c.SendBatch(ctx, []client.BatchItem{{User: "bob", Data: []byte(`1`)}}); err != nil {
		t.Fatalf("batch: %v", err)
	}
	if len(lose.keys) != 3 || lose.keys[0] != "" || lose.keys[1] != "" || lose.keys[2] != "" {
		t.Fatalf("the sends' keys: %q, want none", lose.keys)
	}
}

// TestRedisDownRetriesReadsOnly: with the node's Redis gone, a read, and a send under its
// Idempotency-Key, is tried 1+retries times and gives up with 503 unavailable; an ephemeral
// send, which takes no key, is tried once.
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
		{"POST", func() error { _, err := c.SendToUser(ctx, "bob", client.Text("x")); return err }, 4},
		{"POST", func() error { _, err := c.SendToRoom(ctx, "lobby", client.Text("x")); return err }, 4},
		{"POST", func() error {
			_, err := c.SendBatch(ctx, []client.BatchItem{{User: "bob", Data: []byte(`1`)}})
			return err
		}, 4},
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
