package service

import (
	"bytes"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/internal/testutil"
)

// socketRecorder is an outboxConn that keeps what is written to it.
type socketRecorder struct {
	mu       sync.Mutex
	buf      bytes.Buffer
	writes   int
	deadline time.Time
	fail     error // returned by Write when set
	closed   bool
}

func (s *socketRecorder) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return 0, s.fail
	}
	s.writes++
	return s.buf.Write(b)
}

func (s *socketRecorder) SetWriteDeadline(t time.Time) error {
	s.mu.Lock()
	s.deadline = t
	s.mu.Unlock()
	return nil
}

func (s *socketRecorder) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	return nil
}

// frames parses what was written as unmasked text frames with short payloads.
func (s *socketRecorder) frames(t *testing.T) []string {
	t.Helper()
	s.mu.Lock()
	b := slices.Clone(s.buf.Bytes())
	s.mu.Unlock()
	var out []string
	for len(b) > 0 {
		if len(b) < 2 || b[0] != 0x81 || b[1] >= 126 || len(b) < 2+int(b[1]) {
			t.Fatalf("not a short text frame: % x", b)
		}
		n := int(b[1])
		out = append(out, string(b[2:2+n]))
		b = b[2+n:]
	}
	return out
}

// testOutbox is an outbox whose drain jobs the test runs by hand, so that it decides when
// the socket is written.
type testOutbox struct {
	outbox
	sock      *socketRecorder
	scheduled int // drain jobs scheduled and not run yet
}

func newTestOutbox(maxMessages, maxBytes int) *testOutbox {
	o := &testOutbox{sock: new(socketRecorder)}
	o.init(o.sock, func() { o.scheduled++ }, outboxLimits{maxMessages: maxMessages, maxBytes: maxBytes, writeTimeout: time.Second})
	return o
}

// runJobs runs the scheduled drain jobs, and those they schedule, until none is left.
func (o *testOutbox) runJobs() {
	for o.scheduled > 0 {
		o.scheduled--
		o.drain()
	}
}

func frame(i int) []byte { return []byte("m" + strconv.Itoa(i)) }

// One drain job writes the whole batch (as one writev on a socket: see frameio_test.go).
func TestOutboxWritesQueuedFramesInOrderInOneJob(t *testing.T) {
	o := newTestOutbox(100, 1<<20)
	for i := range 5 {
		if r := o.push(frame(i)); r != pushQueued {
			t.Fatalf("push %d: %v", i, r)
		}
	}
	if o.scheduled != 1 {
		t.Fatalf("%d drain jobs scheduled for 5 frames, want 1", o.scheduled)
	}
	o.runJobs()
	if got, want := o.sock.frames(t), []string{"m0", "m1", "m2", "m3", "m4"}; !slices.Equal(got, want) {
		t.Fatalf("wrote %q, want %q", got, want)
	}
	if o.sock.deadline.IsZero() {
		t.Fatal("no write deadline set")
	}
	// Frames pushed after a drain go out after those before it, with a new job.
	o.push(frame(5))
	o.runJobs()
	if got := o.sock.frames(t); len(got) != 6 || got[5] != "m5" {
		t.Fatalf("wrote %q", got)
	}
	if o.bytes != 0 || len(o.queue) != 0 || o.writing {
		t.Fatalf("after the drain: %d bytes, %d frames queued, writing %v", o.bytes, len(o.queue), o.writing)
	}
}

func TestOutboxRefusesFramesOverItsBounds(t *testing.T) {
	t.Run("in frames", func(t *testing.T) {
		o := newTestOutbox(3, 1<<20)
		for i := range 3 {
			o.push(frame(i))
		}
		if r := o.push(frame(3)); r != pushFull {
			t.Fatalf("fourth frame in a queue of 3: %v, want full", r)
		}
		o.runJobs()
		if got := o.sock.frames(t); len(got) != 3 {
			t.Fatalf("wrote %q: the refused frame must not be queued", got)
		}
		if r := o.push(frame(4)); r != pushQueued {
			t.Fatalf("after the drain: %v, want queued", r)
		}
	})
	t.Run("in bytes", func(t *testing.T) {
		o := newTestOutbox(100, 5)
		if r := o.push([]byte("abc")); r != pushQueued {
			t.Fatal(r)
		}
		if r := o.push([]byte("abc")); r != pushFull {
			t.Fatalf("6 bytes in a queue of 5: %v, want full", r)
		}
		if r := o.push([]byte("ab")); r != pushQueued {
			t.Fatalf("exactly 5 bytes: %v, want queued", r)
		}
	})
}

func TestShutOutboxDiscardsFramesAndWritesNothingMore(t *testing.T) {
	o := newTestOutbox(100, 1<<20)
	o.push(frame(0))
	first := 0
	if !o.shut(func() { first++ }) || first != 1 {
		t.Fatalf("the first shut: first called %d times", first)
	}
	if o.shut(func() { first++ }) || first != 1 {
		t.Fatal("a second shut reported shutting, or called first")
	}
	// The job scheduled before the shut runs, and writes nothing: no data after a close.
	o.runJobs()
	if r := o.push(frame(1)); r != pushClosed {
		t.Fatalf("push after shut: %v, want closed", r)
	}
	o.runJobs()
	if o.sock.writes != 0 || o.scheduled != 0 {
		t.Fatalf("%d writes, %d jobs scheduled after the shut", o.sock.writes, o.scheduled)
	}
	if o.room(1, 100, func() { t.Error("resumed a replay on a shut outbox") }) {
		t.Fatal("a shut outbox has room")
	}
}

// The close frame is written under the write lock, never in the middle of a batch.
func TestOutboxExclusiveWaitsForTheBatchBeingWritten(t *testing.T) {
	o := newTestOutbox(100, 1<<20)
	o.push(frame(0))
	o.wmu.Lock() // a batch being written
	done := make(chan struct{})
	go func() {
		o.exclusive(func() {})
		close(done)
	}()
	select {
	case <-done:
		t.Fatal("exclusive ran while a batch was being written")
	case <-time.After(20 * time.Millisecond):
	}
	o.wmu.Unlock()
	<-done
}

func TestOutboxClosesTheSocketWhenAWriteFails(t *testing.T) {
	o := newTestOutbox(100, 1<<20)
	o.sock.fail = errors.New("broken pipe")
	o.push(frame(0))
	o.runJobs()
	if !o.sock.closed {
		t.Fatal("socket left open after a failed write")
	}
}

// A paced replay fills at most half the queue and is resumed once it drained to a quarter.
func TestOutboxRoomPacesAReplay(t *testing.T) {
	o := newTestOutbox(8, 1000)
	resumed := 0
	resume := func() { resumed++ }
	if !o.room(5000, 5000, resume) {
		t.Fatal("an empty queue has room for any page")
	}
	for i := range 3 {
		o.push(frame(i))
	}
	if !o.room(2, 500, resume) {
		t.Fatal("3 of 8 frames queued: room for one more below half")
	}
	o.push(frame(3))
	if o.room(2, 500, resume) {
		t.Fatal("4 of 8 frames queued: no room at half the queue")
	}
	if o.room(2, 500, resume) {
		t.Fatal("room again before any drain")
	}
	o.runJobs()
	if resumed != 1 {
		t.Fatalf("resumed %d times after the drain, want 1 (the last resume asked for)", resumed)
	}
	o.runJobs()
	if resumed != 1 {
		t.Fatalf("resumed %d times, want once", resumed)
	}
	// The byte limit is the smaller of the page's and half the queue's.
	o.push(make([]byte, 100))
	if o.room(450, 5000, resume) {
		t.Fatal("100+450 bytes over half a queue of 1000")
	}
	if !newTestOutbox(8, 1000).room(450, 5000, resume) {
		t.Fatal("an empty queue has room")
	}
}

// Pushes from many goroutines while drain jobs run lose nothing and reorder nothing per
// pusher (run with -race).
func TestOutboxConcurrentPushesAndDrains(t *testing.T) {
	var o testOutbox
	o.sock = new(socketRecorder)
	jobs := make(chan struct{}, 1)
	o.init(o.sock, func() { jobs <- struct{}{} }, outboxLimits{maxMessages: 1 << 20, maxBytes: 1 << 30, writeTimeout: time.Second})
	stop := make(chan struct{})
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		for {
			select {
			case <-jobs:
				o.drain()
			case <-stop:
				return
			}
		}
	}()
	const pushers, each = 4, 200
	var wg sync.WaitGroup
	for p := range pushers {
		wg.Go(func() {
			for i := range each {
				if r := o.push([]byte(strconv.Itoa(p) + "-" + strconv.Itoa(i))); r != pushQueued {
					t.Errorf("push: %v", r)
					return
				}
			}
		})
	}
	wg.Wait()
	testutil.WaitFor(t, 10*time.Second, func() bool {
		o.mu.Lock()
		defer o.mu.Unlock()
		return !o.writing
	}, "the queue drained")
	close(stop)
	<-drained
	next := make([]int, pushers)
	for _, f := range o.sock.frames(t) {
		ps, is, _ := strings.Cut(f, "-")
		p, _ := strconv.Atoi(ps)
		i, _ := strconv.Atoi(is)
		if i != next[p] {
			t.Fatalf("pusher %d: frame %d after %d", p, i, next[p]-1)
		}
		next[p]++
	}
	for p, n := range next {
		if n != each {
			t.Fatalf("pusher %d: %d frames written, want %d", p, n, each)
		}
	}
}
