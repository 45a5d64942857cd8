package pipeline

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/internal/testutil"
)

// doubling is a request whose answer is twice its input.
type doubling struct{ in, out int }

// recorder is a Send that doubles each item, records the batches it was given, and holds
// the first batch until release is closed.
type recorder struct {
	release  chan struct{}
	mu       sync.Mutex
	batches  [][]int
	inflight atomic.Int64
	most     atomic.Int64 // most batches sent at once
}

func newRecorder() *recorder { return &recorder{release: make(chan struct{})} }

func (r *recorder) send(_ context.Context, batch []*doubling) {
	n := r.inflight.Add(1)
	defer r.inflight.Add(-1)
	if n > r.most.Load() {
		r.most.Store(n)
	}
	r.mu.Lock()
	first := len(r.batches) == 0
	ins := make([]int, len(batch))
	for i, d := range batch {
		ins[i] = d.in
	}
	r.batches = append(r.batches, ins)
	r.mu.Unlock()
	if first {
		<-r.release
	}
	for _, d := range batch {
		d.out = 2 * d.in
	}
}

func (r *recorder) sent() [][]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]int(nil), r.batches...)
}

// doAll runs Do for 1..n concurrently and returns the answers and errors by input.
func doAll(ctx context.Context, b *Batcher[doubling], n int) (wait func() ([]int, []error)) {
	outs, errs := make([]int, n+1), make([]error, n+1)
	var wg sync.WaitGroup
	for i := 1; i <= n; i++ {
		wg.Go(func() {
			var d doubling
			d, errs[i] = b.Do(ctx, doubling{in: i})
			outs[i] = d.out
		})
	}
	return func() ([]int, []error) { wg.Wait(); return outs, errs }
}

// checkAnswers waits for the calls of wait and checks each got its own answer.
func checkAnswers(t *testing.T, wait func() ([]int, []error)) {
	t.Helper()
	outs, errs := wait()
	for i := 1; i < len(outs); i++ {
		if errs[i] != nil || outs[i] != 2*i {
			t.Fatalf("call %d answered %d, %v; want %d", i, outs[i], errs[i], 2*i)
		}
	}
}

// start builds a Batcher and, unless its callers lead, runs one worker until the test ends.
func start[T any](t *testing.T, cfg Config[T]) *Batcher[T] {
	b := New(cfg)
	if !cfg.CallersLead {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); b.Run(ctx, 1) }()
		t.Cleanup(func() { cancel(); <-done })
	}
	return b
}

func TestBatcherSendsWhatQueuedMeanwhileInSharedBatchesAndAnswersEachCaller(t *testing.T) {
	for _, lead := range []bool{false, true} {
		name := map[bool]string{false: "with a worker", true: "with callers leading"}[lead]
		t.Run(name, func(t *testing.T) {
			rec := newRecorder()
			b := start(t, Config[doubling]{Send: rec.send, MaxBatch: 100, CallersLead: lead})
			const calls = 250
			wait := doAll(context.Background(), b, calls)
			testutil.WaitFor(t, 10*time.Second, func() bool {
				queued, _ := b.Pending()
				return len(rec.sent()) == 1 && len(rec.sent()[0])+queued == calls
			}, "every call queued behind the held first batch")
			close(rec.release)
			checkAnswers(t, wait)
			// The held batch, then the rest 100 at a time: at most 1 + 3 batches, where
			// one round trip each would have been 250.
			batches := rec.sent()
			seen := map[int]int{}
			for _, batch := range batches {
				if len(batch) > 100 {
					t.Fatalf("a batch of %d items, more than MaxBatch", len(batch))
				}
				for _, in := range batch {
					seen[in]++
				}
			}
			if len(batches) > 4 || len(seen) != calls {
				t.Fatalf("%d batches carried %d distinct items, want at most 4 carrying %d", len(batches), len(seen), calls)
			}
			for in, n := range seen {
				if n != 1 {
					t.Fatalf("item %d sent %d times", in, n)
				}
			}
			if rec.most.Load() != 1 {
				t.Fatalf("%d batches in flight at once, want 1", rec.most.Load())
			}
			if queued, sending := b.Pending(); queued != 0 || sending != 0 {
				t.Fatalf("left %d queued and %d sending", queued, sending)
			}
		})
	}
}

func TestBatcherCallerWhoseContextEndsBeforeItsItemIsSentGetsTheErrorAndItIsNeverSent(t *testing.T) {
	for _, lead := range []bool{false, true} {
		name := map[bool]string{false: "with a worker", true: "with callers leading"}[lead]
		t.Run(name, func(t *testing.T) {
			rec := newRecorder()
			b := start(t, Config[doubling]{Send: rec.send, CallersLead: lead})
			first := doAll(context.Background(), b, 1) // its batch is held
			testutil.WaitFor(t, 10*time.Second, func() bool { return len(rec.sent()) == 1 }, "the first batch")
			cctx, cancel := context.WithCancel(context.Background())
			errc := make(chan error, 1)
			go func() { _, err := b.Do(cctx, doubling{in: 99}); errc <- err }()
			later := doAll(context.Background(), b, 3) // after 99: one of them leads next
			testutil.WaitFor(t, 10*time.Second, func() bool { q, _ := b.Pending(); return q == 4 }, "four queued calls")
			cancel()
			if err := <-errc; !errors.Is(err, context.Canceled) {
				t.Fatalf("the cancelled call returned %v, want context.Canceled", err)
			}
			close(rec.release)
			checkAnswers(t, first)
			checkAnswers(t, later)
			for _, batch := range rec.sent() {
				for _, in := range batch {
					if in == 99 {
						t.Fatal("the cancelled call's item was sent")
					}
				}
			}
		})
	}
}

func TestBatcherBoundsItsQueue(t *testing.T) {
	rec := newRecorder()
	close(rec.release)
	b := New(Config[doubling]{Send: rec.send, MaxQueued: 2})
	wait := doAll(context.Background(), b, 2) // no worker yet: they stay queued
	testutil.WaitFor(t, 10*time.Second, func() bool { q, _ := b.Pending(); return q == 2 }, "two queued calls")
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := b.Do(ctx, doubling{in: 3}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a call past MaxQueued returned %v, want it to wait until its context ended", err)
	}
	run, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); b.Run(run, 2) }()
	defer func() { stop(); <-done }()
	checkAnswers(t, wait)
	if d, err := b.Do(context.Background(), doubling{in: 3}); err != nil || d.out != 6 {
		t.Fatalf("a call with room answered %d, %v", d.out, err)
	}
}

func TestBatcherCloseSendsWhatIsQueuedAndRefusesMore(t *testing.T) {
	rec := newRecorder()
	b := New(Config[doubling]{Send: rec.send})
	done := make(chan struct{})
	go func() { defer close(done); b.Run(context.Background(), 1) }()
	first := doAll(context.Background(), b, 1)
	testutil.WaitFor(t, 10*time.Second, func() bool { return len(rec.sent()) == 1 }, "the first batch")
	queued := doAll(context.Background(), b, 5)
	testutil.WaitFor(t, 10*time.Second, func() bool { q, _ := b.Pending(); return q == 5 }, "five queued calls")
	b.Close()
	if _, err := b.Do(context.Background(), doubling{in: 7}); !errors.Is(err, ErrClosed) {
		t.Fatalf("a call after Close returned %v, want ErrClosed", err)
	}
	close(rec.release)
	checkAnswers(t, first)
	checkAnswers(t, queued)
	<-done // Run returns once the queue is empty
}

func TestBatcherWhoseContextEndsAnswersWhatIsQueuedWithErrClosed(t *testing.T) {
	rec := newRecorder()
	b := New(Config[doubling]{Send: rec.send})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); b.Run(ctx, 1) }()
	first := doAll(context.Background(), b, 1)
	testutil.WaitFor(t, 10*time.Second, func() bool { return len(rec.sent()) == 1 }, "the first batch")
	queued := doAll(context.Background(), b, 3)
	testutil.WaitFor(t, 10*time.Second, func() bool { q, _ := b.Pending(); return q == 3 }, "three queued calls")
	cancel()
	close(rec.release)
	<-done
	checkAnswers(t, first) // taken before the end: sent and answered
	_, errs := queued()
	for i := 1; i < len(errs); i++ {
		if !errors.Is(errs[i], ErrClosed) {
			t.Fatalf("queued call %d returned %v, want ErrClosed", i, errs[i])
		}
	}
}

func TestBatcherAddQueuesWithoutWaitingAndWorkersSendIt(t *testing.T) {
	var mu sync.Mutex
	var got []int
	b := New(Config[int]{MaxBatch: 3, Send: func(_ context.Context, batch []*int) {
		mu.Lock()
		defer mu.Unlock()
		for _, v := range batch {
			got = append(got, *v)
		}
	}})
	for i := range 10 {
		if err := b.Add(i); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); b.Run(ctx, 3) }()
	testutil.WaitFor(t, 10*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 10 }, "ten items sent")
	cancel()
	<-done
	if err := b.Add(10); !errors.Is(err, ErrClosed) {
		t.Fatalf("Add after the workers stopped returned %v, want ErrClosed", err)
	}
}
