package service_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/switchboard-dev/switchboard/events"
	"github.com/switchboard-dev/switchboard/hooks"
	"github.com/switchboard-dev/switchboard/internal/testutil"
	"github.com/switchboard-dev/switchboard/internal/wsclient"
	"github.com/switchboard-dev/switchboard/service"
)

// Backend hooks (v2) at the edge: a real node, real sockets, real Redis, and a backend on
// httptest that checks every request's signature as a backend must.

const hookSecret = "hook-secret-for-tests"

// hookBackend is a test backend: answer decides each hook's answer; every request it gets
// is checked for the signature, and counted by path.
type hookBackend struct {
	t      *testing.T
	srv    *httptest.Server
	answer func(path string, body map[string]any) (status int, reply string)
	mu     sync.Mutex
	calls  map[string]int
	bodies []map[string]any
}

func startHookBackend(t *testing.T, answer func(path string, body map[string]any) (int, string)) *hookBackend {
	b := &hookBackend{t: t, answer: answer, calls: map[string]int{}}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := events.Verify(hookSecret, r.Header, body, time.Now(), 5*time.Minute); err != nil {
			t.Errorf("%s: the signature does not verify: %v", r.URL.Path, err)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil {
			t.Errorf("%s: body %q is not JSON", r.URL.Path, body)
		}
		b.mu.Lock()
		b.calls[r.URL.Path]++
		b.bodies = append(b.bodies, m)
		b.mu.Unlock()
		status, reply := b.answer(r.URL.Path, m)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, reply)
	}))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *hookBackend) count(path string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.calls[path]
}

func (b *hookBackend) last() map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.bodies[len(b.bodies)-1]
}

// withHooks gives a node the hooks of b named in which ("authorize", "connect", "rpc"),
// with timeout.
func withHooks(t *testing.T, b *hookBackend, timeout time.Duration, which ...string) func(*nodeOptions) {
	cfg := hooks.Config{Secret: hookSecret, Timeout: timeout}
	for _, h := range which {
		switch h {
		case "authorize":
			cfg.AuthorizeURL = b.srv.URL + "/authorize"
		case "connect":
			cfg.ConnectURL = b.srv.URL + "/connect"
		case "rpc":
			cfg.RPCURL = b.srv.URL + "/rpc"
		}
	}
	return func(o *nodeOptions) {
		cfg.Registerer = o.service.Registerer
		c, err := hooks.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		o.service.Hooks = c
	}
}

// The authorize hook decides what the token does not grant: allowed joins and DMs go
// through, refused ones are forbidden, and a backend that fails refuses them as
// unavailable (fail closed) — nothing joined, nothing stored.
func TestAuthorizeHookDecidesWhatTheTokenDoesNotGrant(t *testing.T) {
	var mode atomic.Value
	mode.Store("allow")
	b := startHookBackend(t, func(path string, body map[string]any) (int, string) {
		switch mode.Load() {
		case "allow":
			return 200, `{"allow":true}`
		case "deny":
			return 200, `{"allow":false}`
		case "4xx":
			return 404, `{}`
		case "5xx":
			return 502, `{}`
		case "bad json":
			return 200, `{"allow":`
		}
		time.Sleep(3 * time.Second) // "hang": longer than the node's hook timeout
		return 200, `{"allow":true}`
	})
	srv, _ := startRedis(t)
	n := startNode(t, onRedis(srv), "a", withSecret(t, []byte(permSecret)), withHooks(t, b, 500*time.Millisecond, "authorize"))
	alice, _ := dialClaims(t, n, "alice", jwt.MapClaims{"rooms": []string{"granted"}})

	// A grant never asks the backend.
	if f := answer(t, alice, `{"type":"join","room":"granted","ref":"g"}`); f.Type != "ack" || b.count("/authorize") != 0 {
		t.Fatalf("granted join: %s, %d hook calls", f.Raw, b.count("/authorize"))
	}
	for i, c := range []struct{ mode, code string }{
		{"deny", "forbidden"}, {"4xx", "forbidden"}, {"5xx", "unavailable"}, {"bad json", "unavailable"}, {"hang", "unavailable"}, {"allow", ""},
	} {
		mode.Store(c.mode)
		room, to := fmt.Sprintf("room-%d", i), fmt.Sprintf("user-%d", i)
		jf := answer(t, alice, fmt.Sprintf(`{"type":"join","room":%q,"ref":"j"}`, room))
		if body := b.last(); body["action"] != "join" || body["user"] != "alice" || body["room"] != room {
			t.Fatalf("%s: the hook was asked %v", c.mode, body)
		}
		df := answer(t, alice, fmt.Sprintf(`{"type":"send","to":%q,"data":1,"ref":"d"}`, to))
		if body := b.last(); body["action"] != "send" || body["user"] != "alice" || body["to"] != to {
			t.Fatalf("%s: the hook was asked %v", c.mode, body)
		}
		if c.code == "" {
			if jf.Type != "ack" || df.Type != "ack" {
				t.Fatalf("%s: join %s, DM %s, want acks", c.mode, jf.Raw, df.Raw)
			}
			continue
		}
		if jf.Code != c.code || df.Code != c.code {
			t.Fatalf("%s: join %s, DM %s, want %s", c.mode, jf.Raw, df.Raw, c.code)
		}
		if m := members(t, n, room); len(m) != 0 {
			t.Fatalf("%s: refused join left members %v", c.mode, m)
		}
		if got := storedFor(t, n, to); got != 0 {
			t.Fatalf("%s: refused DM stored %d messages", c.mode, got)
		}
	}
}

// cache_s answers are reused for that user, action and target, until they expire.
func TestAuthorizeHookAnswersAreCachedForCacheS(t *testing.T) {
	b := startHookBackend(t, func(string, map[string]any) (int, string) { return 200, `{"allow":true,"cache_s":1}` })
	srv, _ := startRedis(t)
	n := startNode(t, onRedis(srv), "a", withSecret(t, []byte(permSecret)), withHooks(t, b, time.Second, "authorize"))
	alice, _ := dialClaims(t, n, "alice", nil)
	start := time.Now()
	for i := range 5 {
		if f := answer(t, alice, fmt.Sprintf(`{"type":"send","to":"bob","data":%d}`, i)); f.Type != "ack" {
			t.Fatalf("DM %d: %s", i, f.Raw)
		}
	}
	if since := time.Since(start); since < time.Second && b.count("/authorize") != 1 {
		t.Fatalf("5 DMs to bob within cache_s asked the hook %d times, want once", b.count("/authorize"))
	}
	if f := answer(t, alice, `{"type":"send","to":"carol","data":0}`); f.Type != "ack" {
		t.Fatalf("DM to carol: %s", f.Raw)
	}
	calls := b.count("/authorize")
	if calls < 2 {
		t.Fatalf("a DM to another user was answered from the cache (%d calls)", calls)
	}
	testutil.WaitFor(t, 10*time.Second, func() bool {
		answer(t, alice, `{"type":"send","to":"bob","data":"again"}`)
		return b.count("/authorize") > calls
	}, "the cached answer to expire and the hook to be asked again")
}

// The connect hook decides who a request without a token is, from what the request shows;
// its refusals are the upgrade's, its failures 503, and its expires_at ends the connection.
func TestConnectHookOpensConnectionsForTheBackendsUser(t *testing.T) {
	var expiresAt atomic.Int64
	b := startHookBackend(t, func(path string, body map[string]any) (int, string) {
		h, _ := body["headers"].(map[string]any)
		switch h["Cookie"] {
		case "session=alice":
			exp := ""
			if e := expiresAt.Load(); e != 0 {
				exp = fmt.Sprintf(`,"expires_at":%d`, e)
			}
			return 200, `{"user":"alice","rooms":["team.*"],"dm":["bob"]` + exp + `}`
		case "session=banned":
			return 403, `{}`
		case "session=broken":
			return 500, `{}`
		case "session=nobody":
			return 200, `{"user":"not a valid id"}`
		case "session=stale":
			return 200, fmt.Sprintf(`{"user":"alice","expires_at":%d}`, time.Now().Add(-time.Minute).Unix())
		}
		return 401, `{}`
	})
	srv, _ := startRedis(t)
	n := startNode(t, onRedis(srv), "a", withHooks(t, b, time.Second, "connect"))
	dial := func(cookie string) (*wsclient.Conn, error) {
		return wsclient.Dial(n.wsURL("x=1"), wsclient.Options{Header: http.Header{"Cookie": {cookie}, "User-Agent": {"test-agent"}}})
	}
	for cookie, status := range map[string]int{"": 401, "session=banned": 403, "session=broken": 503, "session=nobody": 503, "session=stale": 401} {
		refused := refusedDial(t, n.wsURL("x=1"), http.Header{"Cookie": {cookie}})
		if refused.Status != status {
			t.Fatalf("cookie %q: %d %s, want %d", cookie, refused.Status, refused.Body, status)
		}
	}
	// ?user= is not dev mode's any more: the node asks its backend.
	if refused := refusedDial(t, n.wsURL("user=alice"), nil); refused.Status != 401 {
		t.Fatalf("?user= on a node with a connect hook: %d, want 401", refused.Status)
	}
	c, err := dial("session=alice")
	must(t, err)
	t.Cleanup(c.Close)
	if w := next(t, c, "welcome"); w.User != "alice" {
		t.Fatalf("welcome %s, want alice", w.Raw)
	}
	body := b.last()
	h := body["headers"].(map[string]any)
	q := body["query"].(map[string]any)
	if h["Cookie"] != "session=alice" || h["User-Agent"] != "test-agent" || q["x"] != "1" || !strings.HasPrefix(body["remote_addr"].(string), "127.0.0.1") {
		t.Fatalf("the hook was asked %v", body)
	}
	// The answer's grants hold: team.* and DMs to bob, nothing else.
	for frame, want := range map[string]string{
		`{"type":"join","room":"team.red","ref":"1"}`:     "ack",
		`{"type":"join","room":"board","ref":"2"}`:        "forbidden",
		`{"type":"send","to":"bob","data":1,"ref":"3"}`:   "ack",
		`{"type":"send","to":"carol","data":1,"ref":"4"}`: "forbidden",
	} {
		if f := answer(t, c, frame); f.Type != want && f.Code != want {
			t.Fatalf("%s: %s, want %s", frame, f.Raw, want)
		}
	}
	// expires_at ends the connection with 4003.
	expiresAt.Store(time.Now().Add(2 * time.Second).Unix())
	e, err := dial("session=alice")
	must(t, err)
	t.Cleanup(e.Close)
	next(t, e, "welcome")
	next(t, e, "expiring")
	select {
	case <-e.Done():
	case <-time.After(15 * time.Second):
		t.Fatal("the connection outlived the hook's expires_at by 10 s")
	}
	if code, _ := e.CloseCode(); code != 4003 {
		t.Fatalf("close code %d, want 4003", code)
	}
}

// call sends an rpc frame with ref and returns its result or error frame, collecting the
// messages that arrive meanwhile.
func call(t *testing.T, c *wsclient.Conn, method, data, ref string) (wsclient.Frame, []wsclient.Frame) {
	t.Helper()
	must(t, c.SendRaw([]byte(fmt.Sprintf(`{"type":"rpc","method":%q,"data":%s,"ref":%q}`, method, data, ref))))
	var msgs []wsclient.Frame
	for {
		f, err := c.NextWithin(10 * time.Second)
		if err != nil {
			t.Fatalf("waiting for the answer to rpc %s: %v", ref, err)
		}
		switch {
		case f.Type == "message":
			msgs = append(msgs, f)
		case (f.Type == "result" || f.Type == "error") && f.Ref == ref:
			return f, msgs
		default:
			t.Fatalf("unexpected frame %s while waiting for rpc %s", f.Raw, ref)
		}
	}
}

// rpc frames become calls to the rpc hook; a 2xx answer is the result, a non-2xx rpc_failed
// with the status, no answer unavailable; without the hook, not_enabled.
func TestRPCHookAnswersCalls(t *testing.T) {
	b := startHookBackend(t, func(path string, body map[string]any) (int, string) {
		switch body["method"] {
		case "echo":
			d, _ := json.Marshal(map[string]any{"echo": body["data"], "user": body["user"], "node": body["node"]})
			return 200, string(d)
		case "empty":
			return 204, ``
		case "missing":
			return 404, `{"error":"no such order"}`
		case "hang":
			time.Sleep(3 * time.Second)
		}
		return 500, `{}`
	})
	srv, _ := startRedis(t)
	n := startNode(t, onRedis(srv), "a", withHooks(t, b, 500*time.Millisecond, "rpc"))
	c, _ := connect(t, n, "alice")
	f, _ := call(t, c, "echo", `{"order":42}`, "1")
	if f.Type != "result" || string(f.Data) != `{"echo":{"order":42},"node":"a","user":"alice"}` {
		t.Fatalf("echo: %s", f.Raw)
	}
	if f, _ := call(t, c, "empty", `null`, "2"); f.Type != "result" || string(f.Data) != "null" {
		t.Fatalf("empty answer: %s, want a result with data null", f.Raw)
	}
	for method, want := range map[string]string{"missing": `"code":"rpc_failed"`, "fails": `"code":"rpc_failed"`, "hang": `"code":"unavailable"`} {
		f, _ := call(t, c, method, `1`, method)
		if f.Type != "error" || !strings.Contains(string(f.Raw), want) {
			t.Fatalf("%s: %s, want %s", method, f.Raw, want)
		}
	}
	if f, _ := call(t, c, "missing", `1`, "s"); !strings.Contains(string(f.Raw), `"status":404`) {
		t.Fatalf("a 404 answer: %s, want status 404", f.Raw)
	}
	// Refusals of the frame itself.
	for frame, code := range map[string]string{
		`{"type":"rpc","method":"echo","data":1}`:                 "bad_request", // no ref
		`{"type":"rpc","method":"bad method","data":1,"ref":"x"}`: "invalid_id",
		`{"type":"rpc","data":1,"ref":"x"}`:                       "invalid_id",
	} {
		if f := answer(t, c, frame); f.Code != code {
			t.Fatalf("%s: %s, want %s", frame, f.Raw, code)
		}
	}
	plain := startNode(t, onRedis(srv), "b")
	pc, _ := connect(t, plain, "alice")
	if f, _ := call(t, pc, "echo", `1`, "n"); f.Code != "not_enabled" {
		t.Fatalf("rpc without --rpc-url: %s, want not_enabled", f.Raw)
	}
}

// A connection keeps receiving its messages while its calls wait for the backend, and
// may have 16 of them in flight: the 17th is refused with rate_limited, and once a call
// returns there is room again.
func TestPendingRPCsLeaveTheConnectionFlowing(t *testing.T) {
	release := make(chan struct{})
	b := startHookBackend(t, func(path string, body map[string]any) (int, string) {
		if body["method"] == "slow" {
			<-release
		}
		return 200, `"done"`
	})
	srv, _ := startRedis(t)
	n := startNode(t, onRedis(srv), "a", withHooks(t, b, 20*time.Second, "rpc"))
	c, _ := connect(t, n, "alice")
	defer close(release)
	for i := range 16 {
		must(t, c.SendRaw([]byte(fmt.Sprintf(`{"type":"rpc","method":"slow","data":%d,"ref":"s%d"}`, i, i))))
	}
	testutil.WaitFor(t, 10*time.Second, func() bool { return b.count("/rpc") == 16 }, "16 calls to reach the backend")
	if f := answer(t, c, `{"type":"rpc","method":"fast","data":1,"ref":"over"}`); f.Code != "rate_limited" || f.Ref != "over" {
		t.Fatalf("the 17th call in flight: %s, want rate_limited", f.Raw)
	}
	// Messages keep arriving while the 16 calls wait.
	for i := range 20 {
		id := sendDM(t, n, "alice", fmt.Sprintf(`{"n":%d}`, i))
		if m := next(t, c, "message"); m.ID != id {
			t.Fatalf("message %d: %s, want id %s", i, m.Raw, id)
		}
	}
	release <- struct{}{} // one slow call returns
	if f := next(t, c, "result"); !strings.HasPrefix(f.Ref, "s") || string(f.Data) != `"done"` {
		t.Fatalf("the released call: %s", f.Raw)
	}
	if f, _ := call(t, c, "fast", `1`, "room-again"); f.Type != "result" {
		t.Fatalf("a call once one returned: %s, want a result", f.Raw)
	}
}

// A hook that hangs stalls only the calls waiting for it: while the backend answers
// nothing for 30 s (10 s with -short), users whose every call needs it keep calling, and
// 100 other connections exchanging DMs lose nothing, in order. Their latency is logged
// for the same exchange with the victims idle first, then during the hang.
func TestHangingHookStallsOnlyItsOwnCalls(t *testing.T) {
	hang := 30 * time.Second
	if testing.Short() {
		hang = 10 * time.Second
	}
	stop := make(chan struct{})
	b := startHookBackend(t, func(string, map[string]any) (int, string) {
		<-stop
		return 200, `{"allow":true}`
	})
	t.Cleanup(func() { close(stop) }) // before the backend's Close, which waits for handlers
	srv, _ := startRedis(t)
	n := startNode(t, onRedis(srv), "a", withSecret(t, []byte(permSecret)), withHooks(t, b, 2*time.Second, "authorize", "rpc"))
	peers := make([]*wsclient.Conn, 100)
	for i := range peers {
		peers[i], _ = dialClaims(t, n, fmt.Sprintf("peer-%d", i), jwt.MapClaims{"dm": []string{"peer-*"}})
	}
	victims := make([]*wsclient.Conn, 5)
	for i := range victims {
		victims[i], _ = dialClaims(t, n, fmt.Sprintf("victim-%d", i), nil)
	}

	calm := exchangeDMs(t, peers, 5*time.Second)
	var wg sync.WaitGroup
	var unavailable atomic.Int64
	deadline := time.Now().Add(hang)
	for _, v := range victims {
		wg.Go(func() {
			// Every DM needs the hanging authorize hook, every call the rpc hook.
			for seq := 0; time.Now().Before(deadline); seq++ {
				_ = v.SendRaw([]byte(fmt.Sprintf(`{"type":"rpc","method":"m","data":1,"ref":"r%d"}`, seq)))
				_ = v.SendRaw([]byte(fmt.Sprintf(`{"type":"send","to":"anyone","data":1,"ref":"d%d"}`, seq)))
				for range 2 {
					f, err := v.NextWithin(30 * time.Second)
					if err != nil {
						t.Errorf("victim: %v", err)
						return
					}
					if f.Code == "unavailable" {
						unavailable.Add(1)
					}
				}
			}
		})
	}
	hung := exchangeDMs(t, peers, hang)
	wg.Wait()
	if unavailable.Load() == 0 {
		t.Fatal("no victim call was refused as unavailable: did the hook hang?")
	}
	t.Logf("100 peers' DMs, victims idle: %s", calm)
	t.Logf("100 peers' DMs, hook hung %v (%d victim calls unavailable): %s", hang, unavailable.Load(), hung)
}

// exchangeDMs has peers, in pairs, DM each other every 200 ms (500 ms under the race
// detector, which slows the node several times) for d; each checks it gets every DM of its
// partner, in order. Latency is measured, not asserted: on a 2-core machine busy with other
// tests it can reach seconds, so a peer fails only when nothing arrives for 30 s. It returns
// the latency quantiles.
func exchangeDMs(t *testing.T, peers []*wsclient.Conn, d time.Duration) string {
	t.Helper()
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	sentBy := make([]atomic.Int64, len(peers))
	doneBy := make([]chan struct{}, len(peers))
	for i := range doneBy {
		doneBy[i] = make(chan struct{})
	}
	deadline := time.Now().Add(d)
	for i, c := range peers {
		partner := i ^ 1
		wg.Go(func() { // sender
			defer close(doneBy[i])
			every := 200 * time.Millisecond
			if service.RaceEnabled {
				every = 500 * time.Millisecond
			}
			tick := time.NewTicker(every)
			defer tick.Stop()
			for ; time.Now().Before(deadline); <-tick.C {
				seq := sentBy[i].Add(1)
				_ = c.SendRaw([]byte(fmt.Sprintf(`{"type":"send","to":"peer-%d","data":{"t":%d,"seq":%d}}`, partner, time.Now().UnixNano(), seq)))
			}
		})
		wg.Go(func() { // reader: the partner's DMs, in order, and acks of its own
			var got int64
			progress := time.Now()
			for {
				select {
				case <-doneBy[partner]:
					if got == sentBy[partner].Load() {
						return
					}
				default:
				}
				if time.Since(progress) > 30*time.Second {
					t.Errorf("peer-%d: nothing for 30 s after %d DMs", i, got)
					return
				}
				f, err := c.NextWithin(100 * time.Millisecond)
				if err != nil {
					continue
				}
				progress = time.Now()
				switch {
				case f.Type == "ack", f.Type == "message" && f.To != "": // an ack, or the copy of its own DM
				case f.Type == "message":
					var m struct{ T, Seq int64 }
					_ = json.Unmarshal(f.Data, &m)
					if m.Seq != got+1 {
						t.Errorf("peer-%d: DM %d after %d", i, m.Seq, got)
						return
					}
					got++
					mu.Lock()
					lat = append(lat, time.Since(time.Unix(0, m.T)))
					mu.Unlock()
				default:
					t.Errorf("peer-%d: unexpected %s", i, f.Raw)
					return
				}
			}
		})
	}
	wg.Wait()
	if len(lat) == 0 {
		t.Fatal("no DM went through")
	}
	slices.Sort(lat)
	q := func(f float64) time.Duration {
		return lat[min(len(lat)-1, int(f*float64(len(lat))))].Round(100 * time.Microsecond)
	}
	return fmt.Sprintf("%d delivered, p50 %v, p99 %v, max %v", len(lat), q(0.5), q(0.99), lat[len(lat)-1].Round(time.Millisecond))
}
