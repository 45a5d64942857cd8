package service

import (
	"bytes"
	"io"
	"net"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/internal/testutil"
)

// The shared writers run jobs in the order they came, on at most max goroutines, and end
// once there are none.
func TestWriteQueueRunsJobsInOrderOnFewGoroutinesThatEnd(t *testing.T) {
	before := runtime.NumGoroutine()
	q := newWriteQueue(1)
	var mu sync.Mutex
	var ran []int
	var concurrent, most atomic.Int32
	release := make(chan struct{})
	for i := range 1000 {
		q.add(func() {
			n := concurrent.Add(1)
			defer concurrent.Add(-1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			if i == 0 {
				<-release // the rest queue behind the first
			}
			mu.Lock()
			ran = append(ran, i)
			mu.Unlock()
		})
	}
	close(release)
	testutil.WaitFor(t, 5*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(ran) == 1000
	}, "every job run")
	for i, r := range ran {
		if r != i {
			t.Fatalf("job %d ran %dth", r, i)
		}
	}
	if most.Load() != 1 {
		t.Fatalf("%d jobs ran at once on a queue of one writer", most.Load())
	}
	testutil.WaitFor(t, 5*time.Second, func() bool { return runtime.NumGoroutine() <= before }, "the writer gone")
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.running != 0 || len(q.jobs) != 0 {
		t.Fatalf("idle queue: %d running, %d jobs", q.running, len(q.jobs))
	}
}

// tcpHandshakeConn is a handshakeConn on a real socket, past its handshake, as a
// connection's writes see it.
func tcpHandshakeConn(t *testing.T) (client net.Conn, h *handshakeConn) {
	t.Helper()
	client, server := tcpPair(t)
	h = newHandshakeConn(server, nil)
	if h.raw == nil {
		t.Fatal("a TCP connection without raw access")
	}
	h.held = true
	return client, h
}

// A socket that takes everything: one writev, nothing kept.
func TestTryWriteWritesWhatTheSocketTakes(t *testing.T) {
	client, h := tcpHandshakeConn(t)
	if r := tryWriteTextFrames(h, [][]byte{[]byte("m0"), []byte("m1")}); r != tryWritten {
		t.Fatalf("try: %v, want written", r)
	}
	buf := make([]byte, 8)
	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(client, buf); err != nil || !bytes.Equal(buf, []byte("\x81\x02m0\x81\x02m1")) {
		t.Fatalf("the peer read % x (%v)", buf, err)
	}
	if h.pending != nil {
		t.Fatalf("kept %q", h.pending)
	}
}

// A client that does not read: writes without waiting fill its socket and never wait.
// What the socket took part of is kept, and goes out whole and first with the next
// waiting write (gws's pong here); once the peer reads, it gets every frame, in order,
// none torn.
func TestTryWriteNeverWaitsAndLosesNothing(t *testing.T) {
	client, h := tcpHandshakeConn(t)
	var want bytes.Buffer
	frameOf := func(i int) []byte { return bytes.Repeat([]byte{byte('a' + i%26)}, 1000) }
	deadline := time.Now().Add(10 * time.Second)
	last := tryWritten
	for i := 0; last == tryWritten; i++ { // each try returns at once, or this never ends
		f := frameOf(i)
		if last = tryWriteTextFrames(h, [][]byte{f}); last != tryRefused {
			want.Write(appendTextHeader(nil, len(f)))
			want.Write(f)
		}
		if time.Now().After(deadline) {
			t.Fatal("the socket never filled")
		}
	}
	if last == tryKept {
		if r := tryWriteTextFrames(h, [][]byte{frameOf(0)}); r != tryRefused {
			t.Fatalf("a try while bytes are kept: %v, want refused", r)
		}
	}
	done := make(chan error, 1)
	go func() { _, err := h.Write([]byte("\x8a\x00")); done <- err }() // waits for room
	want.WriteString("\x8a\x00")
	got := make([]byte, want.Len())
	_ = client.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := io.ReadFull(client, got); err != nil {
		t.Fatalf("the peer read %d of %d bytes: %v", n, want.Len(), err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatal("the peer read frames torn, reordered or lost")
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// An outbox on the shared writers: a batch the socket refuses goes back to the front of the
// queue for a drain job, which writes it before what came after; a batch written whole
// needs no drain job; one partly written leaves a drain job to flush the rest.
func TestOutboxDrainNowLeavesWhatTheSocketDidNotTakeToADrainJob(t *testing.T) {
	o := newTestOutbox(100, 1<<20)
	result := tryRefused
	nows := 0
	o.useWriteQueue(func() { nows++ }, func(frames [][]byte) tryResult {
		if result != tryRefused { // the recorder takes it all; kept bytes would follow
			if err := writeTextFrames(o.sock, frames); err != nil {
				t.Fatal(err)
			}
		}
		return result
	})
	o.push(frame(0))
	o.push(frame(1))
	if nows != 1 || o.scheduled != 0 {
		t.Fatalf("%d jobs on the shared writers, %d of its own, want 1 and 0", nows, o.scheduled)
	}
	o.drainNow()
	if o.scheduled != 1 || !o.writing {
		t.Fatalf("after a refused try: %d drain jobs, writing %v", o.scheduled, o.writing)
	}
	o.push(frame(2))
	o.runJobs()
	if got, want := o.sock.frames(t), []string{"m0", "m1", "m2"}; !slices.Equal(got, want) {
		t.Fatalf("wrote %q, want %q", got, want)
	}
	if o.bytes != 0 || o.writing {
		t.Fatalf("after the drain job: %d bytes, writing %v", o.bytes, o.writing)
	}

	result = tryWritten
	o.push(frame(3))
	o.drainNow()
	if nows != 2 || o.scheduled != 0 || o.writing || o.bytes != 0 {
		t.Fatalf("after a whole write: %d shared jobs, %d own, writing %v, %d bytes", nows, o.scheduled, o.writing, o.bytes)
	}

	result = tryKept
	o.push(frame(4))
	o.drainNow()
	if o.scheduled != 1 || !o.writing || o.bytes != 0 {
		t.Fatalf("after a part write: %d drain jobs, writing %v, %d bytes", o.scheduled, o.writing, o.bytes)
	}
	o.runJobs()
	if got := o.sock.frames(t); len(got) != 5 || got[4] != "m4" || o.writing {
		t.Fatalf("wrote %q, writing %v", got, o.writing)
	}
}
