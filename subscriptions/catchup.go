package subscriptions

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard-dev/switchboard/internal/pipeline"
)

// catchupBatch is how many subscriptions one catch-up pipeline reads.
const catchupBatch = 64

// catchupQueue holds subscriptions that must read their stream: because the node's Pub/Sub
// connection was rebuilt, or for the next page of a replay. Workers read many of them per
// round trip. A subscription is queued at most once at a time (Subscription.queued and
// reading), which bounds the queue.
type catchupQueue struct {
	hub   *Hub
	reads *pipeline.Batcher[catchupRead]
}

// catchupRead is one queued subscription and where its read starts.
type catchupRead struct {
	s      *Subscription
	from   StreamID
	replay bool // the next page of a replay, rather than a catch-up
}

func newCatchupQueue(h *Hub) *catchupQueue {
	q := &catchupQueue{hub: h}
	q.reads = pipeline.New(pipeline.Config[catchupRead]{Send: q.catchUp, MaxBatch: catchupBatch})
	return q
}

// push queues s; it never waits, for its callers hold no lock but may run on the Pub/Sub
// reader. After the hub stopped, s is not read.
func (q *catchupQueue) push(s *Subscription) { _ = q.reads.Add(catchupRead{s: s}) }

// run reads the queued subscriptions with workers until ctx ends.
func (q *catchupQueue) run(ctx context.Context, workers int) { q.reads.Run(ctx, workers) }

// catchUp reads, in one pipeline, each subscription's stream from its last delivered id
// (inclusive, to prove nothing was trimmed past it), delivers what it missed, then what
// arrived live meanwhile, and puts it back live. A subscription with more to read than one
// page goes back on the queue. A subscription whose replay asked for its next page (see
// Subscription.replayAndUnlock) gets that page, bounded in bytes, in the same pipeline.
func (q *catchupQueue) catchUp(ctx context.Context, batch []*catchupRead) {
	h := q.hub
	for _, r := range batch {
		r.s.mu.Lock()
		if r.s.state == stateSetup && r.s.reading {
			r.from, r.replay = r.s.replayFrom, true
		} else {
			r.from = r.s.last
		}
		r.s.mu.Unlock()
	}
	ranges := make([]*redis.XMessageSliceCmd, len(batch))
	pages := make([]*redis.Cmd, len(batch))
	scripts := pipeline.Scripts{Client: h.rdb}
	var err error
	for attempt := 0; ; attempt++ {
		err = scripts.Exec(ctx, len(batch), func(pipe redis.Pipeliner, i int) (redis.Cmder, *redis.Script) {
			r := batch[i]
			stream := h.keys.userStream(r.s.user)
			if r.replay {
				pages[i] = pipe.EvalSha(ctx, pageScript.Hash(), []string{stream}, h.pageArgs(r.from)...)
				return pages[i], pageScript
			}
			ranges[i] = pipe.XRangeN(ctx, stream, r.from.String(), "+", historyPage+1)
			return ranges[i], nil
		})
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
	for i, r := range batch {
		q.apply(ctx, r, ranges[i], pages[i], err)
	}
}

// apply hands one subscription what was read for it, or the batch's error.
func (q *catchupQueue) apply(ctx context.Context, r *catchupRead, rng *redis.XMessageSliceCmd, page *redis.Cmd, err error) {
	h, s := q.hub, r.s
	switch {
	case r.replay && err != nil:
		s.pageRead(r.from, replayPage{}, false, fmt.Errorf("%w: read history: %w", ErrUnavailable, err))
	case r.replay:
		p, perr := parsePage(page.Val())
		kept := false
		if perr == nil {
			kept, perr = h.recoveredFrom(ctx, h.keys.userStream(s.user), r.from, p.entries)
		}
		s.pageRead(r.from, p, kept, perr)
	case err != nil:
		s.mu.Lock()
		s.queued = false
		s.dropAndUnlock(fmt.Errorf("%w: catch up: %w", ErrUnavailable, err))
	default:
		q.finish(s, r.from, rng.Val())
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
