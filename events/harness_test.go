package events

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard-dev/switchboard/internal/redistest"
)

const testSecret = "s3cret"

// newRedis returns a client configured as the service's: no go-redis retries, context
// deadlines honoured.
func newRedis(t testing.TB, srv *redistest.Server) *redis.Client {
	t.Helper()
	opts, err := redis.ParseURL(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	opts.MaxRetries = -1
	opts.ContextTimeoutEnabled = true
	opts.DialTimeout = time.Second
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("EVENTS_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// newQueue builds a queue with test-friendly defaults: fast retries and leases.
func newQueue(t testing.TB, rdb redis.UniversalClient, cfg Config) *Queue {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	if cfg.Secret == "" {
		cfg.Secret = testSecret
	}
	if cfg.RetryMin == 0 {
		cfg.RetryMin, cfg.RetryMax = 20*time.Millisecond, 200*time.Millisecond
	}
	if cfg.ClaimIdle == 0 {
		cfg.ClaimIdle = time.Second
	}
	q, err := New(rdb, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// start runs q until the test ends; the returned func stops it early, waits for Run to
// return and reports how long that took.
func start(t testing.TB, q *Queue) (stop func() time.Duration) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- q.Run(ctx) }()
	var once sync.Once
	var took time.Duration
	stop = func() time.Duration {
		once.Do(func() {
			t0 := time.Now()
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
			took = time.Since(t0)
		})
		return took
	}
	t.Cleanup(func() { stop() })
	return stop
}

// reply is how the receiver answers one request.
type reply struct {
	status int           // 0: 200
	body   string        // answer body
	stall  time.Duration // wait this long (or until the client gives up) and record nothing
	hang   chan struct{} // wait until closed (or the client gives up) and record nothing
	raw    string        // hijack the connection, write these bytes (maybe none) and close
}

func (r reply) ok() bool {
	return r.stall == 0 && r.hang == nil && r.raw == "" && (r.status == 0 || r.status/100 == 2)
}

// receiver is a webhook backend that checks every request as a strict receiver would —
// signature, timestamp, headers, body shape, every event's fields — and records the events
// of the requests it acknowledges, by id.
type receiver struct {
	t      testing.TB
	secret string
	srv    *httptest.Server
	policy func(n int) reply // answer of the n-th request (from 1); nil: 200

	mu       sync.Mutex
	requests int
	accepted map[string]int // id → times acknowledged
	events   []Event        // first occurrences, in the order acknowledged
	maxBatch int
	maxBody  int
	followed int // requests to the redirect target
}

func newReceiver(t testing.TB, policy func(n int) reply) *receiver {
	r := unstartedReceiver(t, policy)
	r.srv.Start()
	return r
}

func unstartedReceiver(t testing.TB, policy func(n int) reply) *receiver {
	r := &receiver{t: t, secret: testSecret, policy: policy, accepted: make(map[string]int)}
	mux := http.NewServeMux()
	mux.HandleFunc("/hook", r.serve)
	mux.HandleFunc("/elsewhere", func(w http.ResponseWriter, _ *http.Request) {
		r.mu.Lock()
		r.followed++
		r.mu.Unlock()
	})
	r.srv = httptest.NewUnstartedServer(mux)
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) url() string { return "http://" + r.srv.Listener.Addr().String() + "/hook" }

var timeRE = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`)
var idRE = regexp.MustCompile(`^[0-9a-f]{32}$`)

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	t := r.t
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return // the sender gave up mid-body
	}
	if req.Method != http.MethodPost || req.Header.Get("Content-Type") != "application/json" {
		t.Errorf("receiver: %s with Content-Type %q", req.Method, req.Header.Get("Content-Type"))
	}
	if r.secret == "" {
		if sig := req.Header.Get(HeaderSignature); sig != "" {
			t.Errorf("receiver: signature %q without a secret", sig)
		}
		if _, err := strconv.ParseInt(req.Header.Get(HeaderTimestamp), 10, 64); err != nil {
			t.Errorf("receiver: timestamp: %v", err)
		}
	} else if err := Verify(r.secret, req.Header, body, time.Now(), time.Minute); err != nil {
		t.Errorf("receiver: %v", err)
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	events := r.check(body)

	r.mu.Lock()
	r.requests++
	n := r.requests
	r.maxBatch = max(r.maxBatch, len(events))
	r.maxBody = max(r.maxBody, len(body))
	r.mu.Unlock()

	var rep reply
	if r.policy != nil {
		rep = r.policy(n)
	}
	switch {
	case rep.stall > 0:
		select {
		case <-time.After(rep.stall):
		case <-req.Context().Done():
		}
		return
	case rep.hang != nil:
		select {
		case <-rep.hang:
		case <-req.Context().Done():
		}
		return
	case rep.raw != "" || (rep.status < 0):
		conn, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("receiver: hijack: %v", err)
			return
		}
		_, _ = buf.WriteString(rep.raw)
		_ = buf.Flush()
		_ = conn.Close()
		return
	case !rep.ok():
		if rep.status/100 == 3 {
			w.Header().Set("Location", "/elsewhere")
		}
		w.WriteHeader(rep.status)
		_, _ = io.WriteString(w, rep.body)
		return
	}
	r.mu.Lock()
	for _, e := range events {
		if r.accepted[e.ID] == 0 {
			r.events = append(r.events, e)
		}
		r.accepted[e.ID]++
	}
	r.mu.Unlock()
	if rep.status != 0 {
		w.WriteHeader(rep.status)
	}
	_, _ = io.WriteString(w, rep.body)
}

// check validates a body as docs/protocol.md ("Backend events") describes it and returns its events.
func (r *receiver) check(body []byte) []Event {
	t := r.t
	var b struct {
		Events []json.RawMessage `json:"events"`
	}
	if err := json.Unmarshal(body, &b); err != nil {
		t.Errorf("receiver: body %.200s: %v", body, err)
		return nil
	}
	if len(b.Events) == 0 || len(b.Events) > MaxBatch {
		t.Errorf("receiver: %d events in one request", len(b.Events))
	}
	events := make([]Event, 0, len(b.Events))
	for _, raw := range b.Events {
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(raw, &fields); err != nil {
			t.Errorf("receiver: event %s: %v", raw, err)
			continue
		}
		var e Event
		if err := json.Unmarshal(raw, &e); err != nil {
			t.Errorf("receiver: event %s: %v", raw, err)
			continue
		}
		var ts string
		_ = json.Unmarshal(fields["time"], &ts)
		want := []string{"id", "node", "time", "type", "user"}
		switch e.Type {
		case RoomJoined, RoomLeft:
			want = append(want, "by", "room")
		case ClientEvent:
			want = append(want, "data", "name")
		case UserOffline:
			if e.Reason != "" {
				want = append(want, "reason")
			}
		}
		var got []string
		for k := range fields {
			got = append(got, k)
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) || !idRE.MatchString(e.ID) || !timeRE.MatchString(ts) ||
			!validID(e.User) || !validID(e.Node) {
			t.Errorf("receiver: malformed %s event %s (fields %v, want %v)", e.Type, raw, got, want)
		}
		events = append(events, e)
	}
	return events
}

// distinct returns how many different events were acknowledged.
func (r *receiver) distinct() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.accepted)
}

func (r *receiver) requestCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.requests
}

// got returns the acknowledged events, first occurrences in order, and the id counts.
func (r *receiver) got() ([]Event, map[string]int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events), maps.Clone(r.accepted)
}

// seq is the "seq" of a client event's data, which tests use to check per-user order.
func seq(t testing.TB, e Event) int {
	var d struct{ Seq int }
	if err := json.Unmarshal(e.Data, &d); err != nil {
		t.Fatalf("data %s: %v", e.Data, err)
	}
	return d.Seq
}

// checkOrder fails unless every user's client events arrived (first occurrences) in the
// order they were emitted.
func checkOrder(t testing.TB, events []Event) {
	t.Helper()
	last := map[string]int{}
	for _, e := range events {
		if e.Type != ClientEvent {
			continue
		}
		s := seq(t, e)
		if prev, ok := last[e.User]; ok && s <= prev {
			t.Fatalf("user %s: event %d arrived after %d", e.User, s, prev)
		}
		last[e.User] = s
	}
}

// clientEvent is the n-th test event of user.
func clientEvent(user string, n int) Event {
	return Event{Type: ClientEvent, User: user, Name: "test.event", Data: json.RawMessage(`{"seq":` + strconv.Itoa(n) + `}`)}
}

// emitN emits n client events round-robin over users.
func emitN(t testing.TB, q *Queue, users []string, n int) {
	t.Helper()
	for i := range n {
		if err := q.Emit(context.Background(), clientEvent(users[i%len(users)], i)); err != nil {
			t.Fatalf("emit %d: %v", i, err)
		}
	}
}

func users(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = "u" + strconv.Itoa(i)
	}
	return out
}

// pending returns the events left in the queue and pending in the group, all shards.
func pending(t testing.TB, q *Queue) (length, pend int64) {
	t.Helper()
	ctx := context.Background()
	for s := range q.cfg.Shards {
		n, err := q.rdb.XLen(ctx, q.keys.stream(s)).Result()
		if err != nil {
			t.Fatal(err)
		}
		length += n
		p, err := q.rdb.XPending(ctx, q.keys.stream(s), q.keys.group()).Result()
		if err != nil && !isNoGroup(err) {
			t.Fatal(err)
		}
		if p != nil {
			pend += p.Count
		}
	}
	return length, pend
}

// freeAddr returns a loopback address nothing listens on: connecting to it is refused.
func freeAddr(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}
