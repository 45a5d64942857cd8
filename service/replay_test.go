package service_test

import (
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/switchboard-dev/switchboard/internal/testutil"
	"github.com/switchboard-dev/switchboard/internal/wsclient"
)

// liveHeap returns the bytes of live heap objects after a collection.
func liveHeap() (alloc, inuse uint64) {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc, m.HeapInuse
}

// fillHistory posts n messages of size bytes to user and returns their ids.
func fillHistory(t *testing.T, n *node, user string, count, size int) []string {
	t.Helper()
	big := `"` + strings.Repeat("h", size) + `"`
	ids := make([]string, 0, count)
	for range count {
		ids = append(ids, sendDM(t, n, user, big))
	}
	return ids
}

// stalledResume opens a resume of user from since that reads its welcome and then stops
// reading its socket, as a client that wants to hold the node's memory would.
func stalledResume(t *testing.T, n *node, user, since string) *wsclient.Conn {
	t.Helper()
	c, err := wsclient.Dial(n.wsURL("user="+user+"&since="+since), wsclient.Options{Buffer: 1})
	if err != nil {
		t.Fatalf("resume of %s: %v", user, err)
	}
	t.Cleanup(c.Abort)
	if w := next(t, c, "welcome"); w.Recovered == nil {
		t.Fatalf("welcome of a resume without recovered: %s", w.Raw)
	}
	return c
}

// waitReplaysStall waits until the node has stopped reading history for its resumes.
func waitReplaysStall(t *testing.T, n *node) {
	t.Helper()
	last, since := int64(-1), time.Now()
	testutil.WaitFor(t, 30*time.Second, func() bool {
		if r := n.hub.Stats().Replayed; r != last {
			last, since = r, time.Now()
		}
		return time.Since(since) > 500*time.Millisecond
	}, "the replays to stall")
}

// Eight resumes from 0-0 of a full history of large messages whose clients never read: the
// node holds a page and a queue's worth of each replay, not the history (issue 13,
// finding 3: eight such resumes held 848 MB before the replay was paged).
func TestStalledResumersHoldAPageOfTheHistoryNotAllOfIt(t *testing.T) {
	srv, _ := startRedis(t)
	const history, size, users, each = 300, 60000, 2, 4
	a := startNode(t, onRedis(srv), "a", func(o *nodeOptions) {
		o.subscriptions.HistorySize = history
		o.service.WriteTimeout = time.Minute // the stalled writes stay stalled while measured
	})
	for u := range users {
		fillHistory(t, a, fmt.Sprintf("mallory%d", u), history, size)
	}
	p := startBystander(t, a, a, "bystander", nil)
	beforeAlloc, beforeInuse := liveHeap()
	for u := range users {
		for range each {
			stalledResume(t, a, fmt.Sprintf("mallory%d", u), "0-0")
		}
	}
	waitReplaysStall(t, a)
	var alloc, inuse uint64
	for range 3 {
		al, in := liveHeap()
		alloc, inuse = max(alloc, al), max(inuse, in)
	}
	growAlloc, growInuse := int64(alloc)-int64(beforeAlloc), int64(inuse)-int64(beforeInuse)
	t.Logf("%d stalled resumes of %d × %d B (%d MB of history each): live heap grew %.1f MB (HeapAlloc), %.1f MB (HeapInuse); %d messages read from the streams",
		users*each, history, size, history*size>>20, float64(growAlloc)/(1<<20), float64(growInuse)/(1<<20), a.hub.Stats().Replayed)
	// Each replay may hold 1 MiB (ReplayBytes' default), and a connection a write in flight
	// and a frame in its client's hands; the history is 17 MB a resume, 137 MB in all.
	const bound = users * each * 4 << 20
	if growAlloc > bound {
		t.Fatalf("the heap grew %d MB with %d stalled resumes, want under %d MB", growAlloc>>20, users*each, bound>>20)
	}
	if p99 := p.Stop(); p99 > 5*time.Second {
		t.Fatalf("bystander p99 %v", p99)
	}
}

// A resume that reads gets every message after since once, in order, recovered, and the
// live messages posted while its replay is under way after them: far more than the live
// buffer holds, which is forgotten and read from the stream instead of dropping the client.
func TestAResumeGetsItsHistoryThenWhatWasPostedDuringItsReplayExactlyOnce(t *testing.T) {
	srv, _ := startRedis(t)
	a := startNode(t, onRedis(srv), "a", func(o *nodeOptions) {
		o.subscriptions.MaxPending = 4 // overflows many times over below
		o.subscriptions.HistorySize = 1000
	})
	// 18 MB: more than the loopback socket buffers hold, so that the replay cannot finish
	// while the client does not read.
	ids := fillHistory(t, a, "bob", 300, 60000)
	p := startBystander(t, a, a, "bystander", nil)
	bob, err := wsclient.Dial(a.wsURL("user=bob&since="+ids[0]), wsclient.Options{Buffer: 1})
	must(t, err)
	t.Cleanup(bob.Close)
	if w := next(t, bob, "welcome"); w.Recovered == nil || !*w.Recovered {
		t.Fatalf("welcome %s: want recovered true", w.Raw)
	}
	want := append([]string(nil), ids[1:]...)
	var got []wsclient.Frame
	// Live messages while the client has read almost none of its replay.
	for i := range 40 {
		want = append(want, sendDM(t, a, "bob", fmt.Sprintf(`{"live":%d}`, i)))
	}
	for len(got) < 20 {
		got = append(got, next(t, bob, "message"))
	}
	// And more while it is reading.
	var g errgroup.Group // the sender's error comes back to the test's goroutine
	var mu sync.Mutex
	var more []string
	g.Go(func() error {
		for i := range 40 {
			id, err := postDM(a, "bob", fmt.Sprintf(`{"during":%d}`, i))
			if err != nil {
				return err
			}
			mu.Lock()
			more = append(more, id)
			mu.Unlock()
		}
		return nil
	})
	for len(got) < len(want) {
		got = append(got, next(t, bob, "message"))
	}
	must(t, g.Wait())
	want = append(want, more...)
	for len(got) < len(want) {
		got = append(got, next(t, bob, "message"))
	}
	checkExactly(t, got, want)
	noFrame(t, bob, 200*time.Millisecond)
	if n := a.srvSlowCloses(); n != 0 {
		t.Fatalf("%d slow-consumer closes: the replay's live buffer overflowing dropped the client", n)
	}
	live := sendDM(t, a, "bob", `"after"`)
	if m := next(t, bob, "message"); m.ID != live {
		t.Fatalf("live after the replay: %s", m.Raw)
	}
	p.Stop()
}

// A user gets MaxResumesPerUser replays under way on a node at once (default 4); another
// resume is refused before the upgrade with 429 rate_limited and Retry-After, while a plain
// connect of the same user, and resumes of other users, go through; a slot comes back when
// a replay ends or its connection closes.
func TestConcurrentResumesOfOneUserAreLimited(t *testing.T) {
	srv, _ := startRedis(t)
	a := startNode(t, onRedis(srv), "a", func(o *nodeOptions) {
		o.subscriptions.HistorySize = 300
		o.service.WriteTimeout = time.Minute
	})
	ids := fillHistory(t, a, "mallory", 200, 60000) // 12 MB: a replay to a stalled client never ends
	p := startBystander(t, a, a, "bystander", nil)
	var stalled []*wsclient.Conn
	for range 4 {
		stalled = append(stalled, stalledResume(t, a, "mallory", "0-0"))
	}
	r := do(t, "GET", a.base+"/ws?user=mallory&since=0-0", "", nil,
		"Connection", "Upgrade", "Upgrade", "websocket", "Sec-WebSocket-Version", "13", "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	if r.status != http.StatusTooManyRequests || r.errorCode(t) != "rate_limited" || r.header.Get("Retry-After") == "" {
		t.Fatalf("a fifth resume: %d %q (Retry-After %q), want 429 rate_limited with Retry-After", r.status, r.body[:min(len(r.body), 200)], r.header.Get("Retry-After"))
	}
	_, err := wsclient.Dial(a.wsURL("user=mallory&since="+ids[len(ids)-1]), wsclient.Options{})
	if re, ok := err.(*wsclient.ErrRefused); !ok || re.Status != http.StatusTooManyRequests {
		t.Fatalf("a fifth resume through a WebSocket client: %v, want refused with 429", err)
	}
	if n := a.hub.LocalConnections("mallory"); n != 4 {
		t.Fatalf("%d connections of mallory after the refusals, want the 4 stalled", n)
	}
	// A plain connect is not a resume.
	plain, _ := connect(t, a, "mallory")
	id := sendDM(t, a, "mallory", `"hello"`)
	testutil.WaitFor(t, 10*time.Second, func() bool {
		f, err := plain.NextWithin(10 * time.Second)
		return err == nil && f.ID == id
	}, "the plain connection to get a live message")
	// Nor is another user's resume.
	connect(t, a, "alice", "since", "0-0")
	// A closed resume gives its slot back; a replay that ends gives it back too, so that
	// one after another many short resumes go through.
	stalled[0].Abort()
	testutil.WaitFor(t, 10*time.Second, func() bool {
		c, err := wsclient.Dial(a.wsURL("user=mallory&since="+ids[len(ids)-1]), wsclient.Options{})
		if err != nil {
			return false
		}
		defer c.Close()
		w, err := c.NextWithin(10 * time.Second)
		return err == nil && w.Type == "welcome"
	}, "the aborted resume's slot to come back")
	// The slot of a short resume comes back when its replay goes live, which the server does
	// just after sending the welcome: the next resume may have to wait that moment.
	for i := range 6 {
		var w wsclient.Frame
		testutil.WaitFor(t, 10*time.Second, func() bool {
			c, err := wsclient.Dial(a.wsURL("user=mallory&since="+ids[len(ids)-1]), wsclient.Options{})
			if re, ok := err.(*wsclient.ErrRefused); ok && re.Status == http.StatusTooManyRequests {
				return false // the previous short resume has not gone live yet
			}
			if err != nil {
				t.Fatalf("short resume %d: %v", i, err)
			}
			defer c.Close()
			if w, err = c.NextWithin(10 * time.Second); err != nil {
				t.Fatalf("short resume %d: %v", i, err)
			}
			return true
		}, fmt.Sprintf("short resume %d to go through", i))
		if w.Type != "welcome" || w.Recovered == nil || !*w.Recovered {
			t.Fatalf("short resume %d: %s", i, w.Raw)
		}
	}
	p.Stop()
}
