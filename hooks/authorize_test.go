package hooks

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/internal/testutil"
)

var joinLobby = AuthorizeRequest{Action: ActionJoin, User: "alice", Room: "lobby"}

func TestAuthorizeOutcomes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		reply   reply
		allow   bool
		err     error
		outcome string
	}{
		{"a 200 with allow true allows", reply{status: 200, body: `{"allow":true}`}, true, nil, "ok"},
		{"a 201 with allow true allows", reply{status: 201, body: `{"allow":true}`}, true, nil, "ok"},
		{"a 200 with allow false refuses", reply{status: 200, body: `{"allow":false}`}, false, nil, "denied"},
		{"a 403 refuses", reply{status: 403, body: `{"allow":true}`}, false, nil, "4xx"},
		{"a 404 refuses", reply{status: 404, body: "no such route"}, false, nil, "4xx"},
		{"a 500 fails closed", reply{status: 500, body: `{"allow":true}`}, false, ErrUnavailable, "5xx"},
		{"a 503 fails closed", reply{status: 503}, false, ErrUnavailable, "5xx"},
		{"a redirect is not followed and fails closed", reply{redirect: true}, false, ErrUnavailable, "3xx"},
		{"bad JSON fails closed", reply{status: 200, body: `{"allow":tru`}, false, ErrUnavailable, "bad_answer"},
		{"an HTML page fails closed", reply{status: 200, body: `<html>ok</html>`}, false, ErrUnavailable, "bad_answer"},
		{"an answer without allow fails closed", reply{status: 200, body: `{"cache_s":60}`}, false, ErrUnavailable, "bad_answer"},
		{"allow as a string fails closed", reply{status: 200, body: `{"allow":"true"}`}, false, ErrUnavailable, "bad_answer"},
		{"a second JSON value fails closed", reply{status: 200, body: `{"allow":true}{"allow":true}`}, false, ErrUnavailable, "bad_answer"},
		{"an empty 200 fails closed", reply{status: 200}, false, ErrUnavailable, "bad_answer"},
		{"a 204 fails closed", reply{status: 204}, false, ErrUnavailable, "bad_answer"},
		{"a body at the limit allows", reply{status: 200, body: padded(`"allow":true`, tableBodySize)}, true, nil, "ok"},
		{"a body over the limit fails closed", reply{status: 200, body: padded(`"allow":true`, tableBodySize+1)}, false, ErrUnavailable, "bad_answer"},
		{"an answer padded over the limit with spaces fails closed", reply{status: 200, body: `{"allow":true}` + strings.Repeat(" ", tableBodySize+1-14)}, false, ErrUnavailable, "bad_answer"},
		{"a timeout fails closed", reply{hang: true}, false, ErrUnavailable, "timeout"},
		{"an unreachable backend fails closed", reply{unreachable: true}, false, ErrUnavailable, "unreachable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			url, b := tt.reply.serve(t)
			c, reg := newClient(t, Config{AuthorizeURL: url, Timeout: tableTimeout, MaxBodyBytes: tableBodySize})
			allow, err := c.Authorize(t.Context(), joinLobby)
			if allow != tt.allow || !errors.Is(err, tt.err) || (tt.err == nil) != (err == nil) {
				t.Fatalf("Authorize = %v, %v; want %v, %v", allow, err, tt.allow, tt.err)
			}
			if err != nil && !strings.Contains(err.Error(), "authorize hook") {
				t.Errorf("the error %q does not name the hook", err)
			}
			checkOutcome(t, reg, HookAuthorize, tt.outcome)
			if b != nil {
				if got, want := b.lastBody(t), `{"action":"join","user":"alice","room":"lobby"}`; got != want {
					t.Errorf("the backend got %s, want %s", got, want)
				}
			}
		})
	}
}

func TestAuthorizeAsksAboutDirectMessages(t *testing.T) {
	t.Parallel()
	b := newBackend(t, answer(200, `{"allow":true}`))
	c, _ := newClient(t, Config{AuthorizeURL: b.url()})
	allow, err := c.Authorize(t.Context(), AuthorizeRequest{Action: ActionSend, User: "alice", To: "bob"})
	if !allow || err != nil {
		t.Fatalf("Authorize = %v, %v", allow, err)
	}
	if got, want := b.lastBody(t), `{"action":"send","user":"alice","to":"bob"}`; got != want {
		t.Errorf("the backend got %s, want %s", got, want)
	}
	b.checkSigned(t)
}

func TestAuthorizeWithoutURLIsNotEnabled(t *testing.T) {
	t.Parallel()
	b := newBackend(t, answer(200, `{"allow":true}`))
	c, reg := newClient(t, Config{RPCURL: b.url(), ConnectURL: b.url()})
	if allow, err := c.Authorize(t.Context(), joinLobby); allow || !errors.Is(err, ErrNotEnabled) {
		t.Fatalf("Authorize = %v, %v; want false, ErrNotEnabled", allow, err)
	}
	if c.Enabled(HookAuthorize) || !c.Enabled(HookRPC) || !c.Enabled(HookConnect) {
		t.Errorf("Enabled: authorize %v, rpc %v, connect %v", c.Enabled(HookAuthorize), c.Enabled(HookRPC), c.Enabled(HookConnect))
	}
	if n := b.calls.Load(); n != 0 {
		t.Errorf("the backend got %d calls", n)
	}
	if n := calls(t, reg, HookAuthorize, "ok"); n != 0 {
		t.Errorf("%v calls counted", n)
	}
}

// cachingBackend answers allow for every user but "eve", with cache_s.
func cachingBackend(t *testing.T, cacheS string) *backend {
	return newBackend(t, func(w http.ResponseWriter, _ *http.Request, body []byte) {
		allow := !strings.Contains(string(body), `"user":"eve"`)
		fmt.Fprintf(w, `{"allow":%v,"cache_s":%s}`, allow, cacheS)
	})
}

func TestAuthorizeCachesAnswersForCacheS(t *testing.T) {
	t.Parallel()
	b := cachingBackend(t, "60")
	clock := newFakeClock()
	c, reg := newClient(t, Config{AuthorizeURL: b.url(), Now: clock.Now})
	ask := func(req AuthorizeRequest, want bool, wantCalls int64, when string) {
		t.Helper()
		allow, err := c.Authorize(t.Context(), req)
		if allow != want || err != nil {
			t.Fatalf("%s: Authorize(%+v) = %v, %v; want %v", when, req, allow, err, want)
		}
		if n := b.calls.Load(); n != wantCalls {
			t.Fatalf("%s: the backend got %d calls, want %d", when, n, wantCalls)
		}
	}
	eve := AuthorizeRequest{Action: ActionJoin, User: "eve", Room: "lobby"}
	ask(joinLobby, true, 1, "first")
	ask(joinLobby, true, 1, "again")
	ask(eve, false, 2, "a denied user")
	ask(eve, false, 2, "the denial again") // denials are cached too
	ask(AuthorizeRequest{Action: ActionJoin, User: "alice", Room: "other"}, true, 3, "another room")
	ask(AuthorizeRequest{Action: ActionSend, User: "alice", To: "lobby"}, true, 4, "another action, same target")
	ask(AuthorizeRequest{Action: ActionJoin, User: "bob", Room: "lobby"}, true, 5, "another user")
	clock.Advance(59*time.Second + 999*time.Millisecond)
	ask(joinLobby, true, 5, "just before cache_s")
	ask(eve, false, 5, "the denial just before cache_s")
	clock.Advance(time.Millisecond)
	ask(joinLobby, true, 6, "at cache_s")
	ask(eve, false, 7, "the denial at cache_s")
	ask(joinLobby, true, 7, "cached anew")
	b.checkSigned(t)
	if n := metric(t, reg, "switchboard_hook_cache_hits_total", nil).GetCounter().GetValue(); n != 5 {
		t.Errorf("cache hits = %v, want 5", n)
	}
	if n := calls(t, reg, HookAuthorize, "ok") + calls(t, reg, HookAuthorize, "denied"); n != 7 {
		t.Errorf("calls counted = %v, want 7", n)
	}
}

func TestAuthorizeCapsCacheS(t *testing.T) {
	t.Parallel()
	b := cachingBackend(t, "1e9")
	clock := newFakeClock()
	c, _ := newClient(t, Config{AuthorizeURL: b.url(), Now: clock.Now})
	for _, step := range []struct {
		advance time.Duration
		calls   int64
	}{{0, 1}, {MaxCacheSeconds*time.Second - time.Millisecond, 1}, {time.Millisecond, 2}} {
		clock.Advance(step.advance)
		if allow, err := c.Authorize(t.Context(), joinLobby); !allow || err != nil {
			t.Fatalf("Authorize = %v, %v", allow, err)
		}
		if n := b.calls.Load(); n != step.calls {
			t.Fatalf("after %s more: %d calls, want %d", step.advance, n, step.calls)
		}
	}
}

func TestAuthorizeCachesNothingElse(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name  string
		reply reply
	}{
		{"an answer without cache_s", reply{status: 200, body: `{"allow":true}`}},
		{"cache_s 0", reply{status: 200, body: `{"allow":true,"cache_s":0}`}},
		{"a negative cache_s", reply{status: 200, body: `{"allow":false,"cache_s":-5}`}},
		{"a 4xx with cache_s", reply{status: 403, body: `{"allow":false,"cache_s":60}`}},
		{"a 5xx with cache_s", reply{status: 500, body: `{"allow":true,"cache_s":60}`}},
		{"a bad answer with cache_s", reply{status: 200, body: `{"allow":1,"cache_s":60}`}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			url, b := tt.reply.serve(t)
			c, _ := newClient(t, Config{AuthorizeURL: url})
			for range 3 {
				_, _ = c.Authorize(t.Context(), joinLobby)
			}
			if n := b.calls.Load(); n != 3 {
				t.Errorf("3 questions made %d calls, want 3", n)
			}
		})
	}
}

func TestAuthorizeCacheIsBounded(t *testing.T) {
	t.Parallel()
	b := cachingBackend(t, "60")
	c, reg := newClient(t, Config{AuthorizeURL: b.url(), MaxCacheEntries: 3})
	room := func(i int) AuthorizeRequest {
		return AuthorizeRequest{Action: ActionJoin, User: "alice", Room: fmt.Sprint("r", i)}
	}
	for i := range 5 {
		if _, err := c.Authorize(t.Context(), room(i)); err != nil {
			t.Fatal(err)
		}
	}
	c.mu.Lock()
	held := c.cache.len()
	c.mu.Unlock()
	if held != 3 {
		t.Errorf("the cache holds %d answers, want its bound, 3", held)
	}
	// The three newest are cached; the two oldest were evicted and are asked again.
	before := b.calls.Load()
	for _, i := range []int{2, 3, 4} {
		_, _ = c.Authorize(t.Context(), room(i))
	}
	if n := b.calls.Load() - before; n != 0 {
		t.Errorf("the newest answers made %d calls, want 0 (cached)", n)
	}
	_, _ = c.Authorize(t.Context(), room(0))
	if n := b.calls.Load() - before; n != 1 {
		t.Errorf("the oldest answer made %d calls, want 1 (evicted)", n)
	}
	if n := metric(t, reg, "switchboard_hook_cache_hits_total", nil).GetCounter().GetValue(); n != 3 {
		t.Errorf("cache hits = %v, want 3", n)
	}
}

// flightWaiters is how many callers wait for the call in flight for req.
func flightWaiters(c *Client, req AuthorizeRequest) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f := c.flights[req]; f != nil {
		return f.waiters
	}
	return -1
}

func TestAuthorizeSharesACallInFlight(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	b := newBackend(t, func(w http.ResponseWriter, _ *http.Request, _ []byte) {
		<-release
		_, _ = w.Write([]byte(`{"allow":true}`))
	})
	c, _ := newClient(t, Config{AuthorizeURL: b.url(), Timeout: 10 * time.Second})
	const askers = 20
	results := make([]<-chan result, askers)
	for i := range results {
		results[i] = authorizeAsync(t.Context(), c, joinLobby)
	}
	other := authorizeAsync(t.Context(), c, AuthorizeRequest{Action: ActionSend, User: "alice", To: "bob"})
	testutil.WaitFor(t, 10*time.Second, func() bool { return flightWaiters(c, joinLobby) == askers-1 }, "the askers to wait for one call")
	testutil.WaitFor(t, 10*time.Second, func() bool { return b.inFlight.Load() == 2 }, "the other question's own call")
	close(release)
	for i, ch := range append(results, other) {
		if r := receive(t, ch, 10*time.Second, "an asker"); !r.allow || r.err != nil {
			t.Fatalf("asker %d: %v, %v", i, r.allow, r.err)
		}
	}
	if n := b.calls.Load(); n != 2 {
		t.Errorf("%d identical questions and another made %d calls, want 2", askers, n)
	}
}

func TestAuthorizeAsksAgainWhenTheCallerItWaitedForLeaves(t *testing.T) {
	t.Parallel()
	var n atomic.Int64
	var b *backend
	b = newBackend(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		if n.Add(1) == 1 {
			b.hang(r) // until its caller leaves
			return
		}
		_, _ = w.Write([]byte(`{"allow":true}`))
	})
	c, _ := newClient(t, Config{AuthorizeURL: b.url(), Timeout: 10 * time.Second})
	ctx, cancel := context.WithCancel(t.Context())
	first := authorizeAsync(ctx, c, joinLobby)
	testutil.WaitFor(t, 10*time.Second, func() bool { return b.inFlight.Load() == 1 }, "the first call")
	second := authorizeAsync(t.Context(), c, joinLobby)
	testutil.WaitFor(t, 10*time.Second, func() bool { return flightWaiters(c, joinLobby) == 1 }, "the second asker to wait")
	cancel()
	if r := receive(t, first, 10*time.Second, "the first asker"); !errors.Is(r.err, context.Canceled) || !errors.Is(r.err, ErrUnavailable) {
		t.Errorf("the first asker: %v, %v; want canceled", r.allow, r.err)
	}
	if r := receive(t, second, 10*time.Second, "the second asker"); !r.allow || r.err != nil {
		t.Errorf("the second asker: %v, %v; want its own answer", r.allow, r.err)
	}
	if n := b.calls.Load(); n != 2 {
		t.Errorf("%d calls, want 2", n)
	}
}

func TestAuthorizeWaiterLeavesWithItsContext(t *testing.T) {
	t.Parallel()
	var b *backend
	b = newBackend(t, func(_ http.ResponseWriter, r *http.Request, _ []byte) { b.hang(r) })
	c, _ := newClient(t, Config{AuthorizeURL: b.url(), Timeout: 10 * time.Second})
	first := authorizeAsync(t.Context(), c, joinLobby)
	testutil.WaitFor(t, 10*time.Second, func() bool { return b.inFlight.Load() == 1 }, "the first call")
	ctx, cancel := context.WithCancel(t.Context())
	second := authorizeAsync(ctx, c, joinLobby)
	testutil.WaitFor(t, 10*time.Second, func() bool { return flightWaiters(c, joinLobby) == 1 }, "the second asker to wait")
	cancel()
	if r := receive(t, second, 10*time.Second, "the waiting asker"); r.allow || !errors.Is(r.err, context.Canceled) {
		t.Errorf("the waiting asker: %v, %v; want canceled", r.allow, r.err)
	}
	select {
	case r := <-first:
		t.Errorf("the first asker returned %v, %v while its call hangs", r.allow, r.err)
	default:
	}
}
