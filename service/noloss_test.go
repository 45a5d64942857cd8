package service_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/switchboard-dev/switchboard/internal/redistest"
	"github.com/switchboard-dev/switchboard/internal/testutil"
	"github.com/switchboard-dev/switchboard/internal/wsclient"
	"github.com/switchboard-dev/switchboard/subscriptions"
)

// resumer follows user across reconnects, rotating over nodes.
func resumer(t *testing.T, user string, nodes ...*node) *wsclient.Resumer {
	r := &wsclient.Resumer{URL: func(attempt int, since string) string {
		q := url.Values{"user": {user}}
		if since != "" {
			q.Set("since", since)
		}
		return nodes[attempt%len(nodes)].wsURL(q.Encode())
	}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	waitResumer(t, r, func(r *wsclient.Resumer) bool { return len(r.Welcomes()) > 0 }, "first welcome")
	return r
}

func waitResumer(t *testing.T, r *wsclient.Resumer, cond func(*wsclient.Resumer) bool, what string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := r.WaitFor(ctx, cond); err != nil {
		t.Fatalf("waiting for %s: %v (got %d messages, closes %v)", what, err, len(r.Messages()), r.Closes())
	}
}

// checkExactly fails unless msgs carry exactly ids, in order, each once.
func checkExactly(t *testing.T, msgs []wsclient.Frame, ids []string) {
	t.Helper()
	got := make([]string, len(msgs))
	for i, m := range msgs {
		got[i] = m.ID
	}
	if !slices.Equal(got, ids) {
		missing, extra := diff(ids, got), diff(got, ids)
		t.Fatalf("got %d messages, want %d; missing %v; unexpected %v", len(got), len(ids), head(missing), head(extra))
	}
}

func diff(a, b []string) []string {
	in := map[string]int{}
	for _, x := range b {
		in[x]++
	}
	var out []string
	for _, x := range a {
		if in[x] == 0 {
			out = append(out, x)
		} else {
			in[x]--
		}
	}
	return out
}

func head(s []string) []string { return s[:min(len(s), 5)] }

func testClientAwayResumesWithExactlyWhatItMissed(t *testing.T, be backend) {
	a := startNode(t, be, "a")
	b := startNode(t, be, "b")
	bob, _ := connect(t, a, "bob")
	seen := sendDM(t, b, "bob", `"before"`)
	next(t, bob, "message")
	bob.Close()

	var missed []string
	for i := range 20 {
		missed = append(missed, sendDM(t, b, "bob", fmt.Sprintf("%d", i)))
	}
	again, w := connect(t, b, "bob", "since", seen)
	if w.Recovered == nil || !*w.Recovered {
		t.Fatalf("welcome %s: want recovered true", w.Raw)
	}
	var got []wsclient.Frame
	for range 20 {
		got = append(got, next(t, again, "message"))
	}
	checkExactly(t, got, missed)
	noFrame(t, again, 200*time.Millisecond)
	// Live messages follow the replay with no gap.
	live := sendDM(t, a, "bob", `"live"`)
	if m := next(t, again, "message"); m.ID != live {
		t.Fatalf("live after replay: %s", m.Raw)
	}
}

func testFreshClientResumesFromWelcomeLastID(t *testing.T, be backend) {
	a := startNode(t, be, "a")
	sendDM(t, a, "bob", `"old"`)
	bob, w := connect(t, a, "bob")
	if w.LastID == "" || w.LastID == "0-0" {
		t.Fatalf("welcome %s: last_id should name the newest message", w.Raw)
	}
	bob.Close()
	id := sendDM(t, a, "bob", `"while away"`)
	again, w2 := connect(t, a, "bob", "since", w.LastID)
	if !*w2.Recovered {
		t.Fatal("not recovered")
	}
	if m := next(t, again, "message"); m.ID != id {
		t.Fatalf("got %s", m.Raw)
	}
}

func testPubSubLinkCutMidStreamLosesNothing(t *testing.T, be backend) {
	a := startNode(t, be, "a")
	b := startNode(t, be, "b")
	bob, _ := connect(t, a, "bob")
	var ids []string
	for i := range 300 {
		if i == 150 {
			be.killPubSub(t)
		}
		ids = append(ids, sendDM(t, b, "bob", fmt.Sprintf("%d", i)))
	}
	var got []wsclient.Frame
	for range 300 {
		got = append(got, next(t, bob, "message"))
	}
	checkExactly(t, got, ids)
	noFrame(t, bob, 200*time.Millisecond)
	t.Logf("node a: %d Pub/Sub reconnects, %d messages caught up from the stream",
		a.hub.Stats().PubSubReconnects, a.hub.Stats().CaughtUp)
}

func testConcurrentSendersArriveInStrictIDOrder(t *testing.T, be backend) {
	a := startNode(t, be, "a")
	b := startNode(t, be, "b")
	bob, _ := connect(t, a, "bob")
	const senders, each = 8, 250
	var mu sync.Mutex
	sent := map[string]bool{}
	var g errgroup.Group // the senders' errors come back to the test's goroutine
	for s := range senders {
		g.Go(func() error {
			n := []*node{a, b}[s%2]
			for i := range each {
				id, err := postDM(n, "bob", fmt.Sprintf(`{"s":%d,"i":%d}`, s, i))
				if err != nil {
					return err
				}
				mu.Lock()
				sent[id] = true
				mu.Unlock()
			}
			return nil
		})
	}
	must(t, g.Wait())
	var prev subscriptions.StreamID
	for i := range senders * each {
		m := next(t, bob, "message")
		id, err := subscriptions.ParseStreamID(m.ID)
		if err != nil || !prev.Less(id) {
			t.Fatalf("message %d: id %s does not follow %s", i, m.ID, prev)
		}
		prev = id
		if !sent[m.ID] {
			t.Fatalf("message %d: id %s was never sent (or arrived twice)", i, m.ID)
		}
		delete(sent, m.ID)
	}
	if len(sent) != 0 {
		t.Fatalf("%d messages missing", len(sent))
	}
}

func testTrimmedHistoryResumesWithRecoveredFalse(t *testing.T, be backend) {
	a := startNode(t, be, "a", func(o *nodeOptions) { o.subscriptions.HistorySize = 5 })
	bob, _ := connect(t, a, "bob")
	seen := sendDM(t, a, "bob", `0`)
	next(t, bob, "message")
	bob.Close()
	var ids []string
	for i := range 20 {
		ids = append(ids, sendDM(t, a, "bob", fmt.Sprintf("%d", i+1)))
	}
	again, w := connect(t, a, "bob", "since", seen)
	if w.Recovered == nil || *w.Recovered {
		t.Fatalf("welcome %s: want recovered false", w.Raw)
	}
	var got []wsclient.Frame
	for range 5 {
		got = append(got, next(t, again, "message"))
	}
	checkExactly(t, got, ids[15:])
}

func testStalledReaderIsClosedWith1013AndResumesWithoutLoss(t *testing.T, be backend) {
	a := startNode(t, be, "a", func(o *nodeOptions) {
		o.service.MaxQueueMessages = 64
		o.service.MaxQueueBytes = 1 << 20
	})
	// The stalled client reads one frame and then stops reading its socket.
	stalled, err := wsclient.Dial(a.wsURL("user=slow"), wsclient.Options{Buffer: 1})
	must(t, err)
	t.Cleanup(stalled.Close)
	w := next(t, stalled, "welcome")
	fast, _ := connect(t, a, "fast")

	big := `"` + strings.Repeat("x", 60000) + `"`
	var ids []string
	var worst time.Duration
	for i := 0; a.srvSlowCloses() == 0; i++ {
		if i == 2000 {
			t.Fatal("2000 large messages and the stalled reader was never closed")
		}
		ids = append(ids, sendDM(t, a, "slow", big))
		// Another user on the node is not slowed down.
		start := time.Now()
		id := sendDM(t, a, "fast", fmt.Sprintf("%d", i))
		if m := next(t, fast, "message"); m.ID != id {
			t.Fatalf("fast got %s", m.Raw)
		}
		worst = max(worst, time.Since(start))
	}
	if worst > time.Second {
		t.Fatalf("another user's DM took %s while a reader was stalled", worst)
	}
	t.Logf("stalled reader closed after %d messages of 60 kB; worst latency of another user %s", len(ids), worst)

	// The stalled client reads again: it gets what was in flight, then the 1013 close.
	var got []wsclient.Frame
	for {
		f, err := stalled.NextWithin(10 * time.Second)
		if err != nil {
			break
		}
		if f.Type == "message" {
			got = append(got, f)
		}
	}
	if code, err := stalled.CloseCode(); code != 1013 {
		t.Fatalf("close code %d (%v), want 1013", code, err)
	}
	// It resumes after the last message it got and receives the rest, exactly.
	since := w.LastID
	if len(got) > 0 {
		since = got[len(got)-1].ID
	}
	checkExactly(t, got, ids[:len(got)])
	again, w2 := connect(t, a, "slow", "since", since)
	if !*w2.Recovered {
		t.Fatalf("welcome %s: want recovered", w2.Raw)
	}
	var rest []wsclient.Frame
	for range len(ids) - len(got) {
		rest = append(rest, next(t, again, "message"))
	}
	checkExactly(t, rest, ids[len(got):])
}

func testDrainingNodeClosesWith1012AndClientsResumeElsewhere(t *testing.T, be backend) {
	a := startNode(t, be, "a")
	b := startNode(t, be, "b")
	bob := resumer(t, "bob", a, b) // first connection on a, then b
	var ids []string
	var stopped time.Duration
	for i := range 200 {
		if i == 50 {
			start := time.Now()
			a.Stop() // what SIGTERM does
			stopped = time.Since(start)
		}
		ids = append(ids, sendDM(t, b, "bob", fmt.Sprintf("%d", i)))
	}
	if stopped > 5*time.Second {
		t.Fatalf("drain took %s, want under 5s", stopped)
	}
	waitResumer(t, bob, func(r *wsclient.Resumer) bool { return len(r.Messages()) >= len(ids) }, "all messages")
	checkExactly(t, bob.Messages(), ids)
	if closes := bob.Closes(); len(closes) != 1 || closes[0] != 1012 {
		t.Fatalf("closes %v, want [1012]", closes)
	}
}

func TestRedisOutageKeepsSocketsOpenAndCatchesUp(t *testing.T) {
	srv := redistest.Start(t, redistest.WithArgs("--appendonly", "yes", "--appendfsync", "always"))
	a := startNode(t, onRedis(srv), "a")
	bob, _ := connect(t, a, "bob")
	first := sendDM(t, a, "bob", `1`)
	next(t, bob, "message")

	srv.Stop()
	testutil.WaitFor(t, 10*time.Second, func() bool { return do(t, "GET", a.base+"/readyz", "", nil).status == http.StatusServiceUnavailable }, "readyz 503 while Redis is down")
	r := do(t, "POST", a.base+"/v1/users/bob/messages", "application/json", strings.NewReader(`2`))
	if r.status != http.StatusServiceUnavailable || r.errorCode(t) != "unavailable" {
		t.Fatalf("POST while Redis is down: %d %s", r.status, r.body)
	}
	srv.Restart(t)
	testutil.WaitFor(t, 15*time.Second, func() bool { return do(t, "GET", a.base+"/readyz", "", nil).status == http.StatusOK }, "readyz 200 after Redis is back")
	second := sendDM(t, a, "bob", `3`)
	m := next(t, bob, "message")
	if m.ID != second {
		t.Fatalf("after the outage bob got %s, want %s", m.Raw, second)
	}
	select {
	case <-bob.Done():
		t.Fatal("bob's socket was closed by the outage")
	default:
	}
	hist := do(t, "GET", a.base+"/v1/users/bob/messages", "", nil)
	if got := strings.Count(string(hist.body), `"type":"message"`); got != 2 || !strings.Contains(string(hist.body), first) {
		t.Fatalf("history after the outage: %s (the refused POST must not be stored)", hist.body)
	}
}

func testResumeOfAHistoryLargerThanTheQueueIsPacedNotDropped(t *testing.T, be backend) {
	a := startNode(t, be, "a", func(o *nodeOptions) {
		o.service.MaxQueueBytes = 256 << 10 // the history below is 2 MB
		o.service.MaxQueueMessages = 64
		o.subscriptions.HistorySize = 500
	})
	big := `"` + strings.Repeat("y", 10000) + `"`
	var ids []string
	for range 200 {
		ids = append(ids, sendDM(t, a, "bob", big))
	}
	bob, w := connect(t, a, "bob", "since", "0-0")
	if w.Recovered == nil || !*w.Recovered {
		t.Fatalf("welcome %s", w.Raw)
	}
	var got []wsclient.Frame
	for range ids {
		got = append(got, next(t, bob, "message"))
	}
	checkExactly(t, got, ids)
	if a.srvSlowCloses() != 0 {
		t.Fatal("the replay was dropped as a slow consumer")
	}
	// And live delivery follows.
	id := sendDM(t, a, "bob", `"live"`)
	if m := next(t, bob, "message"); m.ID != id {
		t.Fatalf("live after a paced replay: %s", m.Raw)
	}
}

// A write stuck on a peer that stopped reading, before its queue is over any bound, ends
// when WriteTimeout passes (the drain moves the deadline only every half WriteTimeout, so
// within ½–1 × WriteTimeout of the write): the connection closes, nobody else waits on it,
// and its client resumes without loss.
func TestAWriteStuckOnAPeerThatStoppedReadingEndsItsConnection(t *testing.T) {
	srv, _ := startRedis(t)
	const writeTimeout = 400 * time.Millisecond
	a := startNode(t, onRedis(srv), "a", func(o *nodeOptions) { o.service.WriteTimeout = writeTimeout })
	stalled, err := wsclient.Dial(a.wsURL("user=slow"), wsclient.Options{Buffer: 1})
	must(t, err)
	t.Cleanup(stalled.Close)
	w := next(t, stalled, "welcome")
	fast, _ := connect(t, a, "fast")

	// 200 messages of 60 kB: 12 MB, more than the two sockets' buffers can hold (Linux
	// allows at most 6 + 4 MB by default), and far below the queue's bounds (4,096 messages,
	// 16 MiB), so that only the stuck write can end the connection.
	big := `"` + strings.Repeat("x", 60000) + `"`
	var ids []string
	for i := 0; i < 200 && a.hub.LocalConnections("slow") > 0; i++ {
		ids = append(ids, sendDM(t, a, "slow", big))
		id := sendDM(t, a, "fast", fmt.Sprintf("%d", i))
		if m := next(t, fast, "message"); m.ID != id {
			t.Fatalf("fast got %s", m.Raw)
		}
	}
	testutil.WaitFor(t, 10*writeTimeout, func() bool { return a.hub.LocalConnections("slow") == 0 },
		"the write to a peer that stopped reading to time out")
	if n := a.srvSlowCloses(); n != 0 {
		t.Fatalf("%d slow-consumer closes: the queue bound ended it, not the write deadline", n)
	}
	// What the stalled client still reads, then a resume from there: every message, once.
	var got []wsclient.Frame
	for {
		f, err := stalled.NextWithin(5 * time.Second)
		if err != nil {
			break
		}
		if f.Type == "message" {
			got = append(got, f)
		}
	}
	checkExactly(t, got, ids[:len(got)])
	since := w.LastID
	if len(got) > 0 {
		since = got[len(got)-1].ID
	}
	again, _ := connect(t, a, "slow", "since", since)
	var rest []wsclient.Frame
	for range len(ids) - len(got) {
		rest = append(rest, next(t, again, "message"))
	}
	checkExactly(t, rest, ids[len(got):])
}
