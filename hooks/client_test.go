package hooks

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-dev/switchboard/events"
	"github.com/switchboard-dev/switchboard/internal/testutil"
)

func TestNewRefusesURLsThatCannotBePostedTo(t *testing.T) {
	t.Parallel()
	for _, cfg := range []Config{
		{AuthorizeURL: "ftp://backend/authorize"},
		{ConnectURL: "backend/connect"},
		{RPCURL: "http:///rpc"},
		{RPCURL: "http://back end/rpc"},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) accepted it", cfg)
		}
	}
}

func TestRequestsAreSignedAndStamped(t *testing.T) {
	t.Parallel()
	headers := make(chan http.Header, 1)
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		headers <- r.Header.Clone()
		_, _ = w.Write([]byte(`{"allow":true}`))
	})
	c, _ := newClient(t, Config{AuthorizeURL: b.url(), UserAgent: "test-agent/1"})
	if _, err := c.Authorize(t.Context(), joinLobby); err != nil {
		t.Fatal(err)
	}
	h := <-headers
	if ua := h.Get("User-Agent"); ua != "test-agent/1" {
		t.Errorf("User-Agent %q", ua)
	}
	if sig := h.Get(events.HeaderSignature); !strings.HasPrefix(sig, "sha256=") || len(sig) != len("sha256=")+64 {
		t.Errorf("signature %q", sig)
	}
	b.checkSigned(t) // events.Verify with the secret, within a minute of now
}

func TestTheBackendsCheckCatchesAWrongSecret(t *testing.T) {
	t.Parallel()
	b := newBackend(t, answer(200, `{"allow":true}`))
	c, _ := newClient(t, Config{AuthorizeURL: b.url(), Secret: "another secret"})
	// The backend refuses it with 401, which the hook reads as a refusal.
	if allow, err := c.Authorize(t.Context(), joinLobby); allow || err != nil {
		t.Fatalf("Authorize = %v, %v; want refused", allow, err)
	}
	if n := b.badRequests.Load(); n != 1 {
		t.Fatalf("the backend refused %d requests, want 1", n)
	}
}

func TestWithoutSecretRequestsAreStampedOnly(t *testing.T) {
	t.Parallel()
	headers := make(chan http.Header, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		headers <- r.Header.Clone()
		_, _ = w.Write([]byte(`true`))
	}))
	t.Cleanup(srv.Close)
	c, err := New(Config{RPCURL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.RPC(t.Context(), RPCRequest{User: "alice", Method: "m"}); err != nil {
		t.Fatal(err)
	}
	h := <-headers
	if h.Get(events.HeaderTimestamp) == "" || h.Get(events.HeaderSignature) != "" {
		t.Errorf("timestamp %q, signature %q; want a timestamp only", h.Get(events.HeaderTimestamp), h.Get(events.HeaderSignature))
	}
}

func TestConnectionsAreKeptAlive(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	peers := map[string]bool{}
	statuses := []int{200, 404, 500, 302, 200}
	var i int
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		mu.Lock()
		peers[r.RemoteAddr] = true
		status := statuses[i%len(statuses)]
		i++
		mu.Unlock()
		if status == 302 {
			w.Header().Set("Location", "/elsewhere")
		}
		w.WriteHeader(status)
		_, _ = w.Write([]byte(`{"ok":true,"note":"a body to drain"}`))
	})
	c, _ := newClient(t, Config{RPCURL: b.url()})
	for range 50 {
		_, _ = c.RPC(t.Context(), RPCRequest{User: "alice", Method: "m"})
	}
	mu.Lock()
	defer mu.Unlock()
	if len(peers) != 1 {
		t.Errorf("50 calls in turn, whatever their status, used %d connections, want 1", len(peers))
	}
}

// blockingBackend answers allow once release is closed; its handlers also return when the
// client gives up.
func blockingBackend(t *testing.T) (*backend, chan struct{}) {
	release := make(chan struct{})
	var b *backend
	b = newBackend(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		select {
		case <-release:
			_, _ = w.Write([]byte(`{"allow":true}`))
		case <-r.Context().Done():
		case <-b.stop:
		}
	})
	return b, release
}

func TestCallsBeyondTheBoundWaitForASlot(t *testing.T) {
	t.Parallel()
	b, release := blockingBackend(t)
	c, reg := newClient(t, Config{AuthorizeURL: b.url(), MaxConcurrent: 3, Timeout: 20 * time.Second})
	const callers = 10
	results := make([]<-chan result, callers)
	for i := range results {
		// Different questions: identical ones would share a call.
		results[i] = authorizeAsync(t.Context(), c, AuthorizeRequest{Action: ActionJoin, User: "alice", Room: "r" + string(rune('a'+i))})
	}
	testutil.WaitFor(t, 10*time.Second, func() bool { return b.inFlight.Load() == 3 }, "three calls at the backend")
	if v := metric(t, reg, "switchboard_hook_in_flight", map[string]string{"hook": "authorize"}).GetGauge().GetValue(); v != 3 {
		t.Errorf("in flight = %v, want 3", v)
	}
	close(release)
	for i, ch := range results {
		if r := receive(t, ch, 20*time.Second, "a caller"); !r.allow || r.err != nil {
			t.Fatalf("caller %d: %v, %v", i, r.allow, r.err)
		}
	}
	if n, most := b.calls.Load(), b.maxInFlight.Load(); n != callers || most != 3 {
		t.Errorf("%d calls, at most %d at once; want %d, at most 3", n, most, callers)
	}
}

func TestACallThatGetsNoSlotInTimeIsUnavailable(t *testing.T) {
	t.Parallel()
	b := newBackend(t, answer(200, `true`))
	c, reg := newClient(t, Config{RPCURL: b.url(), MaxConcurrent: 2, Timeout: time.Second})
	// Two calls in flight, held for longer than the timeout: the test takes their slots.
	e := c.hooks[2]
	e.slots <- struct{}{}
	e.slots <- struct{}{}
	_, err := c.RPC(t.Context(), RPCRequest{User: "alice", Method: "m"})
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "slots busy") {
		t.Fatalf("RPC with every slot taken: %v, want unavailable (busy)", err)
	}
	if n := b.calls.Load(); n != 0 {
		t.Errorf("the backend got %d calls", n)
	}
	checkOutcome(t, reg, HookRPC, "busy")
	<-e.slots
	if _, err := c.RPC(t.Context(), RPCRequest{User: "alice", Method: "m"}); err != nil {
		t.Fatalf("RPC with a slot free: %v", err)
	}
}

func TestACallerThatLeavesWhileWaitingForASlotIsCanceled(t *testing.T) {
	t.Parallel()
	b := newBackend(t, answer(200, `true`))
	c, reg := newClient(t, Config{RPCURL: b.url(), MaxConcurrent: 1, Timeout: 20 * time.Second})
	c.hooks[2].slots <- struct{}{}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.RPC(ctx, RPCRequest{User: "alice", Method: "m"}); !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("RPC: %v, want unavailable with the caller's deadline", err)
	}
	checkOutcome(t, reg, HookRPC, "canceled")
}

func TestAHangingHookStallsOnlyTheCallsWaitingForIt(t *testing.T) {
	t.Parallel()
	// The authorize hook hangs for one user and answers the others at once; the rpc hook
	// answers at once.
	var auth *backend
	auth = newBackend(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		if strings.Contains(string(body), `"user":"slow"`) {
			auth.hang(r)
			return
		}
		_, _ = w.Write([]byte(`{"allow":true}`))
	})
	rpc := newBackend(t, answer(200, `{"ok":true}`))
	c, _ := newClient(t, Config{AuthorizeURL: auth.url(), RPCURL: rpc.url(), MaxConcurrent: 2, Timeout: time.Minute})
	hung := []<-chan result{
		authorizeAsync(t.Context(), c, AuthorizeRequest{Action: ActionJoin, User: "slow", Room: "a"}),
		authorizeAsync(t.Context(), c, AuthorizeRequest{Action: ActionJoin, User: "slow", Room: "b"}),
	}
	testutil.WaitFor(t, 10*time.Second, func() bool { return auth.inFlight.Load() == 2 }, "two hanging calls")
	// Every authorize slot is taken by a hanging call; the rpc hook has its own.
	for range 20 {
		if data, err := c.RPC(t.Context(), RPCRequest{User: "alice", Method: "m"}); err != nil || string(data) != `{"ok":true}` {
			t.Fatalf("RPC while authorize hangs: %s, %v", data, err)
		}
	}
	for _, ch := range hung {
		select {
		case r := <-ch:
			t.Fatalf("a hanging call returned %v, %v", r.allow, r.err)
		default:
		}
	}
	if n := rpc.calls.Load(); n != 20 {
		t.Errorf("the rpc backend got %d calls, want 20", n)
	}
}

func TestAHangingCallLeavesTheOthersOfItsHookAlone(t *testing.T) {
	t.Parallel()
	var b *backend
	b = newBackend(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		if strings.Contains(string(body), `"user":"slow"`) {
			b.hang(r)
			return
		}
		_, _ = w.Write([]byte(`{"allow":true}`))
	})
	c, _ := newClient(t, Config{AuthorizeURL: b.url(), MaxConcurrent: 4, Timeout: time.Minute})
	hung := authorizeAsync(t.Context(), c, AuthorizeRequest{Action: ActionJoin, User: "slow", Room: "a"})
	testutil.WaitFor(t, 10*time.Second, func() bool { return b.inFlight.Load() == 1 }, "the hanging call")
	for i := range 20 {
		req := AuthorizeRequest{Action: ActionSend, User: "alice", To: "u" + string(rune('a'+i))}
		if allow, err := c.Authorize(t.Context(), req); !allow || err != nil {
			t.Fatalf("Authorize while another call hangs: %v, %v", allow, err)
		}
	}
	select {
	case r := <-hung:
		t.Fatalf("the hanging call returned %v, %v", r.allow, r.err)
	default:
	}
}

func TestMetricsCountEveryHook(t *testing.T) {
	t.Parallel()
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		switch {
		case strings.Contains(string(body), `"remote_addr"`):
			_, _ = w.Write([]byte(`{"user":"alice"}`))
		case strings.Contains(string(body), `"method"`):
			w.WriteHeader(http.StatusTeapot)
		default:
			_, _ = w.Write([]byte(`{"allow":false,"cache_s":60}`))
		}
	})
	c, reg := newClient(t, Config{AuthorizeURL: b.url(), ConnectURL: b.url(), RPCURL: b.url()})
	for range 2 {
		_, _ = c.Authorize(t.Context(), joinLobby) // a call, then a cache hit
	}
	_, _ = c.Connect(t.Context(), ConnectRequest{})
	_, _ = c.RPC(t.Context(), RPCRequest{User: "alice", Method: "m"})
	for _, want := range []struct {
		hook    Hook
		outcome string
	}{{HookAuthorize, "denied"}, {HookConnect, "ok"}, {HookRPC, "4xx"}} {
		checkOutcome(t, reg, want.hook, want.outcome)
	}
	if n := metric(t, reg, "switchboard_hook_cache_hits_total", nil).GetCounter().GetValue(); n != 1 {
		t.Errorf("cache hits = %v, want 1", n)
	}
	// A second client on the same registry shares the metrics rather than panicking.
	if _, err := New(Config{AuthorizeURL: b.url(), Registerer: reg}); err != nil {
		t.Fatal(err)
	}
}

func TestWithoutRegistererNothingIsRegistered(t *testing.T) {
	t.Parallel()
	b := newBackend(t, answer(200, `{"allow":true}`))
	c, err := New(Config{AuthorizeURL: b.url(), Secret: testSecret})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if allow, err := c.Authorize(t.Context(), joinLobby); !allow || err != nil {
		t.Fatalf("Authorize = %v, %v", allow, err)
	}
	reg := prometheus.NewRegistry()
	if _, err := New(Config{Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	if families, _ := reg.Gather(); len(families) == 0 {
		t.Error("a client with a registerer registered nothing")
	}
}

func TestBadAnswersAreLoggedAtMostOnceAMinute(t *testing.T) {
	t.Parallel()
	var logs strings.Builder
	var mu sync.Mutex
	b := newBackend(t, answer(200, `{"allow":"maybe"}`))
	c, reg := newClient(t, Config{AuthorizeURL: b.url(), Logger: slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, nil))})
	for range 3 {
		if _, err := c.Authorize(t.Context(), joinLobby); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("Authorize: %v", err)
		}
	}
	mu.Lock()
	out := logs.String()
	mu.Unlock()
	if n := strings.Count(out, "hook=authorize"); n != 1 {
		t.Errorf("3 bad answers logged %d times, want 1:\n%s", n, out)
	}
	if n := calls(t, reg, HookAuthorize, "bad_answer"); n != 3 {
		t.Errorf("bad answers counted: %v, want 3", n)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *strings.Builder
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
