package subscriptions

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// catchupQueue holds subscriptions that must read their stream because the node's Pub/Sub
// connection was rebuilt. Workers read many of them per round trip.
type catchupQueue struct {
	hub    *Hub
	mu     sync.Mutex
	queue  []*Subscription
	notify chan struct{}
}

func newCatchupQueue(h *Hub) *catchupQueue {
	return &catchupQueue{hub: h, notify: make(chan struct{}, 1)}
}

func (q *catchupQueue) push(s *Subscription) {
	q.mu.Lock()
	q.queue = append(q.queue, s)
	q.mu.Unlock()
	select {
	case q.notify <- struct{}{}:
	default:
	}
}

// take removes up to n subscriptions from the queue.
func (q *catchupQueue) take(n int) []*Subscription {
	q.mu.Lock()
	defer q.mu.Unlock()
	n = min(n, len(q.queue))
	batch := make([]*Subscription, n)
	copy(batch, q.queue)
	q.queue = append(q.queue[:0], q.queue[n:]...)
	if len(q.queue) > 0 {
		select {
		case q.notify <- struct{}{}:
		default:
		}
	}
	return batch
}

func (q *catchupQueue) run(ctx context.Context, workers int) {
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case <-q.notify:
				}
				for batch := q.take(64); len(batch) > 0; batch = q.take(64) {
					q.catchUp(ctx, batch)
				}
			}
		})
	}
	wg.Wait()
}

// catchUp reads, in one pipeline, each subscription's stream from its last delivered id
// (inclusive, to prove nothing was trimmed past it), delivers what it missed, then what
// arrived live meanwhile, and puts it back live. A subscription with more to read than one
// page goes back on the queue. A subscription whose replay asked for its next page (see
// Subscription.replayAndUnlock) gets that page, bounded in bytes, in the same pipeline.
func (q *catchupQueue) catchUp(ctx context.Context, batch []*Subscription) {
	h := q.hub
	froms := make([]StreamID, len(batch))
	replays := make([]bool, len(batch))
	for i, s := range batch {
		s.mu.Lock()
		if s.state == stateSetup && s.reading {
			froms[i], replays[i] = s.replayFrom, true
		} else {
			froms[i] = s.last
		}
		s.mu.Unlock()
	}
	var ranges []*redis.XMessageSliceCmd
	var pages []*redis.Cmd
	var err error
	for attempt := 0; ; attempt++ {
		pipe := h.rdb.Pipeline()
		ranges = make([]*redis.XMessageSliceCmd, len(batch))
		pages = make([]*redis.Cmd, len(batch))
		for i, s := range batch {
			stream := h.keys.userStream(s.user)
			if replays[i] {
				pages[i] = pipe.EvalSha(ctx, pageScript.Hash(), []string{stream}, h.pageArgs(froms[i])...)
			} else {
				ranges[i] = pipe.XRangeN(ctx, stream, froms[i].String(), "+", historyPage+1)
			}
		}
		_, err = pipe.Exec(ctx)
		if err != nil && isNoScript(err) && attempt < 5 {
			// Redis restarted or failed over and lost the script; the reads did not run.
			if lerr := pageScript.Load(ctx, h.rdb).Err(); lerr == nil {
				continue
			}
		}
		if err == nil || ctx.Err() != nil || attempt == 5 {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(100<<attempt) * time.Millisecond):
		}
	}
	if err != nil {
		h.obs.ObserveRedisError()
	}
	for i, s := range batch {
		switch {
		case replays[i] && err != nil:
			s.pageRead(froms[i], replayPage{}, false, fmt.Errorf("%w: read history: %w", ErrUnavailable, err))
		case replays[i]:
			page, perr := parsePage(pages[i].Val())
			kept := false
			if perr == nil {
				kept, perr = h.recoveredFrom(ctx, h.keys.userStream(s.user), froms[i], page.entries)
			}
			s.pageRead(froms[i], page, kept, perr)
		case err != nil:
			s.mu.Lock()
			s.queued = false
			s.dropAndUnlock(fmt.Errorf("%w: catch up: %w", ErrUnavailable, err))
		default:
			q.finish(s, froms[i], ranges[i].Val())
		}
	}
}

// finish applies one subscription's page of its stream.
func (q *catchupQueue) finish(s *Subscription, from StreamID, page []redis.XMessage) {
	s.mu.Lock()
	s.queued = false
	if s.state != stateSyncing {
		s.mu.Unlock() // closed meanwhile
		return
	}
	if !from.IsZero() && (len(page) == 0 || page[0].ID != from.String()) {
		// Our position left the stream: messages after it were trimmed before we read them.
		s.dropAndUnlock(ErrLagged)
		return
	}
	ok := true
	for _, e := range page {
		if m, valid := entryMessage(e); valid && s.last.Less(m.ID) {
			q.hub.caughtUp.Add(1)
			if ok = s.deliverLocked(m); !ok {
				break
			}
		}
	}
	if ok && len(page) > historyPage {
		s.queued = true // more to read before the buffered live messages
		s.mu.Unlock()
		q.push(s)
		return
	}
	s.goLiveAndUnlock(ok)
}
