package subscriptions

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/internal/redistest"
	"github.com/switchboard-dev/switchboard/internal/testutil"
)

// pacedSink is a sink with a queue that holds what was delivered until drain empties it,
// as a connection's outgoing queue does until its socket takes it.
type pacedSink struct {
	sink
	queued   int
	resume   func()
	replayed int
}

func (p *pacedSink) Room(n, limit int, resume func()) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.queued == 0 || p.queued+n <= limit {
		return true
	}
	p.resume = resume
	return false
}

func (p *pacedSink) Deliver(m Message) bool {
	p.mu.Lock()
	p.queued += len(m.Payload)
	p.mu.Unlock()
	return p.sink.Deliver(m)
}

func (p *pacedSink) Replayed() {
	p.mu.Lock()
	p.replayed++
	p.mu.Unlock()
}

// drain empties the queue and lets a paced replay continue.
func (p *pacedSink) drain() {
	p.mu.Lock()
	p.queued = 0
	resume := p.resume
	p.resume = nil
	p.mu.Unlock()
	if resume != nil {
		resume()
	}
}

// pump drains p until it has n messages or was dropped.
func (p *pacedSink) pump(t *testing.T, n int) {
	t.Helper()
	testutil.WaitFor(t, 20*time.Second, func() bool {
		p.drain()
		_, dropped := p.snapshot()
		return p.count() >= n || dropped != nil
	}, strconv.Itoa(n)+" messages")
}

// heldBytes is what the subscription holds of its replay.
func heldBytes(s *Subscription) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, m := range s.replay {
		n += len(m.Payload)
	}
	return n
}

const pageTestBytes = 32 << 10 // ReplayBytes of these tests: pages of 16 KiB

func publishBig(t *testing.T, h *Hub, user string, n int) []StreamID {
	t.Helper()
	ids := make([]StreamID, n)
	for i := range ids {
		ids[i] = publish(t, h, user, `"`+strings.Repeat("p", 10000)+strconv.Itoa(i)+`"`)
	}
	return ids
}

func TestAResumeReadsOnePageBeforeItsWelcomeAndDecidesRecoveredAsBefore(t *testing.T) {
	srv := redistest.Start(t)
	h := startHub(t, srv, func(c *Config) { c.HistorySize = 20; c.ReplayBytes = pageTestBytes })
	ids := publishBig(t, h, "bob", 40) // 400 kB, the stream keeps the last 20
	cases := []struct {
		name      string
		since     string
		want      []StreamID
		recovered bool
	}{
		{"a since trimmed away", ids[3].String(), ids[20:], false},
		{"0-0 on a trimmed stream", "0-0", ids[20:], false},
		{"a since still kept", ids[25].String(), ids[26:], true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := &pacedSink{}
			ctx := t.Context()
			sub, w, err := h.Subscribe(ctx, "bob", tc.since, p)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(sub.Close)
			if w.Recovered == nil || *w.Recovered != tc.recovered {
				t.Fatalf("recovered %v, want %v", w.Recovered, tc.recovered)
			}
			// Half the budget is read ahead, and a first message passes whatever its size.
			if held := heldBytes(sub); held > pageTestBytes/2+10100 {
				t.Fatalf("the subscription holds %d bytes of its replay before the welcome, want at most a page (%d)", held, pageTestBytes/2)
			}
			sub.Start()
			p.pump(t, len(tc.want))
			msgs, dropped := p.snapshot()
			if dropped != nil {
				t.Fatalf("dropped: %v", dropped)
			}
			checkInOrder(t, msgs, tc.want)
			testutil.WaitFor(t, 5*time.Second, func() bool { p.mu.Lock(); defer p.mu.Unlock(); return p.replayed == 1 }, "Replayed once")
		})
	}
}

func TestLiveMessagesOverflowingAPagedReplayAreReadFromTheStream(t *testing.T) {
	srv := redistest.Start(t)
	h := startHub(t, srv, func(c *Config) { c.ReplayBytes = pageTestBytes; c.MaxPending = 2 })
	ids := publishBig(t, h, "bob", 50)
	p := &pacedSink{}
	subscribe(t, h, "bob", "0-0", p) // the queue stays full: the replay waits
	for i := range 30 {
		ids = append(ids, publish(t, h, "bob", strconv.Itoa(i)))
	}
	p.pump(t, len(ids))
	for i := range 10 { // and live delivery follows
		ids = append(ids, publish(t, h, "bob", "after"+strconv.Itoa(i)))
	}
	p.pump(t, len(ids))
	msgs, dropped := p.snapshot()
	if dropped != nil {
		t.Fatalf("dropped: %v", dropped)
	}
	checkInOrder(t, msgs, ids)
}

func TestHistoryTrimmedUnderAStalledReplayDropsItAsLagged(t *testing.T) {
	srv := redistest.Start(t)
	h := startHub(t, srv, func(c *Config) { c.HistorySize = 10; c.ReplayBytes = pageTestBytes; c.MaxPending = 2 })
	ids := publishBig(t, h, "bob", 5)
	p := &pacedSink{}
	_, w := subscribe(t, h, "bob", "0-0", p)
	if !*w.Recovered {
		t.Fatal("recovered false on a stream never trimmed")
	}
	// While the client does not read, the history moves on past its replay's position.
	for i := range 20 {
		ids = append(ids, publish(t, h, "bob", strconv.Itoa(i)))
	}
	p.pump(t, len(ids))
	msgs, dropped := p.snapshot()
	if dropped != ErrLagged {
		t.Fatalf("dropped with %v after %d messages, want ErrLagged", dropped, len(msgs))
	}
	checkInOrder(t, msgs, ids[:len(msgs)]) // what it got is in order, and it resumes from there
}
