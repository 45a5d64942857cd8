// Package pipeline shares Redis round trips between concurrent callers. A Batcher gathers
// the work callers submit and sends what has accumulated as one batch (one pipeline); Exec
// sends script calls by SHA in a pipeline, loads the scripts a server lost and sends again
// exactly the calls that did not run.
package pipeline

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"sync"
)

// ErrClosed is returned for work submitted to a Batcher that has stopped, or left queued
// in it when it stopped.
var ErrClosed = errors.New("pipeline: batcher stopped")

// Config configures a Batcher. Zero values mean the defaults named on each field.
type Config[T any] struct {
	// Send sends one batch, in one pipeline, and records each item's result in the item. It
	// must have handled every item when it returns.
	Send func(ctx context.Context, batch []*T)
	// MaxBatch bounds how many items one batch holds. Default 512.
	MaxBatch int
	// MaxQueued bounds how many items wait for a batch: past it Do waits for room. Default
	// none; callers bound it themselves (each waits for its item, or queues it at most once).
	MaxQueued int
	// CallersLead makes the callers of Do send the batches, one at a time, so that the
	// Batcher needs no goroutine: the first caller leads, the callers that arrive meanwhile
	// wait, and the first of them leads the next batch. Each caller leads at most once, and
	// only a batch its own item is in. Without it, Run's workers send the batches.
	CallersLead bool
}

// Batcher sends the items concurrent callers submit in shared batches, so that under load
// many items pay one round trip. Each batch is taken after the sender has yielded once,
// which lets the callers about to submit join it.
type Batcher[T any] struct {
	cfg  Config[T]
	room chan struct{} // a token per queued item, with MaxQueued
	wake chan struct{} // tells a worker there is work or the Batcher closed
	pool sync.Pool     // of *waiter[T]

	mu      sync.Mutex
	queue   []*waiter[T]
	sending int       // batches being sent
	closed  bool      // no more items are taken
	lead    sender[T] // the leading caller's buffers, with CallersLead
}

// waiter is one queued item and how its caller learns the outcome.
type waiter[T any] struct {
	item T
	err  error // ErrClosed when the item was dropped unsent
	// done answers the item (false), or hands its caller the lead of the next batch (true).
	done  chan bool
	async bool // submitted by Add: nobody waits for it
}

// sender holds one sender's batch buffers between batches.
type sender[T any] struct {
	waiters []*waiter[T]
	items   []*T
}

// New returns a Batcher; with CallersLead unset, start its workers with Run.
func New[T any](cfg Config[T]) *Batcher[T] {
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 512
	}
	b := &Batcher[T]{cfg: cfg, wake: make(chan struct{}, 1)}
	if cfg.MaxQueued > 0 {
		b.room = make(chan struct{}, cfg.MaxQueued)
	}
	b.pool.New = func() any { return &waiter[T]{done: make(chan bool, 1)} }
	return b
}

// Do submits item and waits until a batch has sent it, then returns the item as Send left
// it. It returns ctx's error, or ErrClosed, when the item was not sent: if ctx ends after
// the item went into a batch, Do still waits for the batch, whose outcome it cannot undo.
func (b *Batcher[T]) Do(ctx context.Context, item T) (T, error) {
	var zero T
	if b.room != nil {
		select {
		case b.room <- struct{}{}:
		case <-ctx.Done():
			return zero, ctx.Err()
		}
	}
	w := b.pool.Get().(*waiter[T])
	w.item = item
	ok, lead := b.enqueue(w)
	if !ok {
		b.free(w)
		return zero, ErrClosed
	}
	if !lead {
		var err error
		if lead, err = b.wait(ctx, w); err != nil {
			return zero, err
		}
	}
	if lead {
		b.leadBatch(ctx)
		<-w.done // the batch held w's item
	}
	item, err := w.item, w.err
	b.free(w)
	return item, err
}

// Add submits item for Run's workers to send and returns at once. It returns ErrClosed
// after the Batcher stopped. It does not wait for room: use it without MaxQueued. With
// CallersLead nobody would send it: Add refuses.
func (b *Batcher[T]) Add(item T) error {
	if b.cfg.CallersLead {
		return errors.New("pipeline: Add needs Run's workers, and the callers lead")
	}
	w := b.pool.Get().(*waiter[T])
	w.item, w.async = item, true
	if ok, _ := b.enqueue(w); !ok {
		b.free(w)
		return ErrClosed
	}
	return nil
}

// enqueue queues w unless the Batcher is closed, and wakes a worker. With CallersLead it
// reports whether w's caller leads the next batch: none is being sent.
func (b *Batcher[T]) enqueue(w *waiter[T]) (ok, lead bool) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		if b.room != nil {
			<-b.room
		}
		return false, false
	}
	b.queue = append(b.queue, w)
	if b.cfg.CallersLead && b.sending == 0 {
		b.sending, lead = 1, true
	}
	b.mu.Unlock()
	if !b.cfg.CallersLead {
		b.notify()
	}
	return true, lead
}

// wait waits for w's answer or for the lead. When ctx ends first and w is still queued, it
// takes w out, passing on a lead it was handed meanwhile.
func (b *Batcher[T]) wait(ctx context.Context, w *waiter[T]) (lead bool, err error) {
	select {
	case lead = <-w.done:
		return lead, nil
	case <-ctx.Done():
	}
	b.mu.Lock()
	i := slices.Index(b.queue, w)
	if i < 0 {
		b.mu.Unlock()
		return <-w.done, nil // in a batch already
	}
	b.queue = slices.Delete(b.queue, i, i+1)
	select {
	case lead = <-w.done:
		if lead {
			b.passLeadLocked()
		}
	default:
	}
	b.mu.Unlock()
	if b.room != nil {
		<-b.room
	}
	b.free(w)
	return false, ctx.Err()
}

// leadBatch sends one batch for the callers and passes the lead to the next in line.
func (b *Batcher[T]) leadBatch(ctx context.Context) {
	runtime.Gosched()
	// Other callers' items are in the batch: the leader's cancellation must not fail them.
	// Only the leader uses b.lead; the lead is handed over under mu.
	b.send(context.WithoutCancel(ctx), &b.lead)
	b.mu.Lock()
	b.passLeadLocked()
	b.mu.Unlock()
}

// passLeadLocked hands the lead to the first caller in line, or ends it; mu held.
func (b *Batcher[T]) passLeadLocked() {
	if len(b.queue) > 0 {
		b.queue[0].done <- true
		return
	}
	b.sending = 0
}

// send takes up to MaxBatch queued items, sends them and answers each. It reports whether
// there was anything to send.
func (b *Batcher[T]) send(ctx context.Context, s *sender[T]) bool {
	b.mu.Lock()
	n := min(len(b.queue), b.cfg.MaxBatch)
	s.waiters = append(s.waiters[:0], b.queue[:n]...)
	rest := copy(b.queue, b.queue[n:])
	clear(b.queue[rest:])
	b.queue = b.queue[:rest]
	if !b.cfg.CallersLead && n > 0 {
		b.sending++
		if rest > 0 {
			b.notify() // another worker can take the rest
		}
	}
	b.mu.Unlock()
	if n == 0 {
		return false
	}
	if b.room != nil {
		for range n {
			<-b.room
		}
	}
	s.items = s.items[:0]
	for _, w := range s.waiters {
		s.items = append(s.items, &w.item)
	}
	b.cfg.Send(ctx, s.items)
	clear(s.items)
	for _, w := range s.waiters {
		if w.async {
			b.free(w)
			continue
		}
		w.done <- false
	}
	clear(s.waiters)
	if !b.cfg.CallersLead {
		b.mu.Lock()
		b.sending--
		b.mu.Unlock()
	}
	return true
}

// free puts w back in the pool.
func (b *Batcher[T]) free(w *waiter[T]) {
	var zero T
	w.item, w.err, w.async = zero, nil, false
	b.pool.Put(w)
}

func (b *Batcher[T]) notify() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// Run sends batches with workers goroutines until ctx ends or Close was called, and returns
// when they have stopped. After Close the workers first send what is queued; when ctx ends,
// what is queued is dropped and its callers get ErrClosed. Run may be called more than once
// at the same time, each call adding workers.
func (b *Batcher[T]) Run(ctx context.Context, workers int) {
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() { b.work(ctx) })
	}
	wg.Wait()
}

func (b *Batcher[T]) work(ctx context.Context) {
	var s sender[T]
	for {
		select {
		case <-ctx.Done():
			b.drop()
			return
		case <-b.wake:
		}
		// Yield before each batch: on a busy node the callers about to submit join it
		// instead of each paying for a round trip of its own.
		for ctx.Err() == nil {
			runtime.Gosched()
			if !b.send(ctx, &s) {
				break
			}
		}
		b.mu.Lock()
		done := b.closed && len(b.queue) == 0
		b.mu.Unlock()
		if done {
			b.notify() // the other workers stop too
			return
		}
	}
}

// Close stops taking items; Run sends what is queued and returns. It may be called more than once.
func (b *Batcher[T]) Close() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.notify()
}

// drop stops taking items and answers every queued one with ErrClosed.
func (b *Batcher[T]) drop() {
	b.mu.Lock()
	b.closed = true
	queued := b.queue
	b.queue = nil
	b.mu.Unlock()
	for _, w := range queued {
		if b.room != nil {
			<-b.room
		}
		if w.async {
			b.free(w)
			continue
		}
		w.err = ErrClosed
		w.done <- false
	}
}

// Pending returns how many items wait for a batch and how many batches are being sent.
func (b *Batcher[T]) Pending() (queued, sending int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.queue), b.sending
}
