package hooks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/switchboard-dev/switchboard/events"
)

const testSecret = "s3cret"

// backend is a test's hook receiver. It checks every request as a real backend must (a
// signed POST of JSON, events.Verify with testSecret), keeps the bodies, and answers with
// its handler. A request that fails the check is answered 401 and counted in badRequests,
// which the test's cleanup requires to be zero unless the test expects otherwise.
type backend struct {
	srv         *httptest.Server
	handler     func(w http.ResponseWriter, r *http.Request, body []byte)
	stop        chan struct{} // closed at cleanup: hanging handlers return
	calls       atomic.Int64
	inFlight    atomic.Int64
	maxInFlight atomic.Int64
	badRequests atomic.Int64

	mu     sync.Mutex
	bodies []string
	errs   []error
}

func newBackend(t *testing.T, handler func(w http.ResponseWriter, r *http.Request, body []byte)) *backend {
	t.Helper()
	b := &backend{handler: handler, stop: make(chan struct{})}
	b.srv = httptest.NewServer(http.HandlerFunc(b.serve))
	t.Cleanup(b.srv.Close) // after stop is closed (cleanups run last first)
	t.Cleanup(func() { close(b.stop) })
	return b
}

func (b *backend) serve(w http.ResponseWriter, r *http.Request) {
	n := b.inFlight.Add(1)
	defer b.inFlight.Add(-1)
	for {
		m := b.maxInFlight.Load()
		if n <= m || b.maxInFlight.CompareAndSwap(m, n) {
			break
		}
	}
	b.calls.Add(1)
	body, err := io.ReadAll(r.Body)
	if err == nil {
		err = checkRequest(r, body)
	}
	b.mu.Lock()
	b.bodies = append(b.bodies, string(body))
	if err != nil {
		b.errs = append(b.errs, err)
	}
	b.mu.Unlock()
	if err != nil {
		b.badRequests.Add(1)
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	b.handler(w, r, body)
}

// checkRequest is what a receiver checks: the method, the content type, a User-Agent, and
// the signature with the project's own Verify.
func checkRequest(r *http.Request, body []byte) error {
	if r.Method != http.MethodPost {
		return fmt.Errorf("method %s, want POST", r.Method)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		return fmt.Errorf("content type %q", ct)
	}
	if r.Header.Get("User-Agent") == "" {
		return errors.New("no User-Agent")
	}
	return events.Verify(testSecret, r.Header, body, time.Now(), time.Minute)
}

func (b *backend) url() string { return b.srv.URL + "/hook" }

// lastBody is the body of the last request received.
func (b *backend) lastBody(t *testing.T) string {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.bodies) == 0 {
		t.Fatal("the backend received no request")
	}
	return b.bodies[len(b.bodies)-1]
}

// checkSigned fails the test if any request failed the receiver's check.
func (b *backend) checkSigned(t *testing.T) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, err := range b.errs {
		t.Errorf("the backend refused a request: %v", err)
	}
}

// hang blocks the handler until the client gives up or the test ends.
func (b *backend) hang(r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-b.stop:
	}
}

// answer returns a handler that answers status and body.
func answer(status int, body string) func(http.ResponseWriter, *http.Request, []byte) {
	return func(w http.ResponseWriter, _ *http.Request, _ []byte) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

// closedURL is the URL of a port nothing listens on any more.
func closedURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return "http://" + addr + "/hook"
}

// newClient builds a client signed with testSecret and a registry of its own, closed at
// cleanup.
func newClient(t *testing.T, cfg Config) (*Client, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	if cfg.Secret == "" {
		cfg.Secret = testSecret
	}
	cfg.Registerer = reg
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c, reg
}

// calls is the value of switchboard_hook_calls_total{hook,outcome}.
func calls(t *testing.T, reg prometheus.Gatherer, hook Hook, outcome string) float64 {
	t.Helper()
	m := metric(t, reg, "switchboard_hook_calls_total", map[string]string{"hook": string(hook), "outcome": outcome})
	if m == nil {
		return 0
	}
	return m.GetCounter().GetValue()
}

// metric finds the metric of family name with labels, or nil.
func metric(t *testing.T, reg prometheus.Gatherer, name string, labels map[string]string) *dto.Metric {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if want, ok := labels[l.GetName()]; ok && want != l.GetValue() {
					continue next
				}
			}
			return m
		}
	}
	return nil
}

// fakeClock is a clock the test moves.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// result is one call's return, for calls made on other goroutines.
type result struct {
	allow bool
	err   error
}

func authorizeAsync(ctx context.Context, c *Client, req AuthorizeRequest) <-chan result {
	ch := make(chan result, 1)
	go func() {
		allow, err := c.Authorize(ctx, req)
		ch <- result{allow, err}
	}()
	return ch
}

// receive waits for a call's result, failing the test after d.
func receive(t *testing.T, ch <-chan result, d time.Duration, what string) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(d):
		t.Fatalf("%s: no result within %s", what, d)
		return result{}
	}
}
