package events

import (
	"context"
	"errors"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// entry is one queued event as the sender handles it: its stream id, the stream id's time
// (when Redis queued it, which MaxAge is measured from), its encoded JSON, and its user and
// cost in bytes, which the byte budget releases when it is deleted.
type entry struct {
	id   string
	ms   int64
	body string
	user string
	cost string // "0" for an entry queued without it
}

// newEntry reads a stream entry; ok is false for one that holds no event.
func newEntry(m redis.XMessage) (e entry, ok bool) {
	e.id, e.user, e.cost = m.ID, "", "0"
	if u, isStr := m.Values["u"].(string); isStr {
		e.user = u
	}
	if c, isStr := m.Values["c"].(string); isStr && e.user != "" {
		e.cost = c
	}
	body, isStr := m.Values["e"].(string)
	ms, err := strconv.ParseInt(m.ID[:max(0, strings.IndexByte(m.ID, '-'))], 10, 64)
	if !isStr || err != nil {
		return e, false
	}
	e.body, e.ms = body, ms
	return e, true
}

// ackTimeout bounds one XACK+XDEL round trip.
const ackTimeout = 5 * time.Second

// send delivers shard w.shard while this instance holds its lease: first every event left
// pending on the shard by any consumer (a dead node's, or a previous process's), oldest
// first, then new events as they come; every ClaimIdle it also claims events that went
// idle on another consumer, such as a node that read after losing its lease and then died.
func (q *Queue) send(ctx context.Context, w *worker) {
	defer q.release(ctx, w)
	s := w.shard
	log := q.log.With("shard", s)
	var (
		claimFrom = "0-0"       // a claim pass in progress: its cursor; "" between passes
		claimIdle time.Duration // 0 on takeover: the lease says no one else sends the shard
		nextSweep = time.Now().Add(q.cfg.ClaimIdle)
		delay     = q.cfg.RetryMin // between failed Redis calls
		failing   bool
	)
	for !w.stopping(ctx) {
		var msgs []redis.XMessage
		var err error
		switch {
		case claimFrom != "":
			msgs, claimFrom, err = q.claim(ctx, s, claimFrom, claimIdle)
			q.stats.claimed.Add(int64(len(msgs)))
			if err == nil && claimFrom == "" {
				q.pruneConsumers(ctx, s)
			}
		case !time.Now().Before(nextSweep):
			claimFrom, claimIdle = "0-0", q.cfg.ClaimIdle
			nextSweep = time.Now().Add(q.cfg.ClaimIdle)
			continue
		default:
			msgs, err = q.read(ctx, s)
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if isNoGroup(err) {
				// Redis lost the group (a restart without persistence) or never had it.
				err = q.ensureGroup(ctx, s)
			}
			if err != nil {
				if !failing {
					log.Warn("reading the event queue", "err", err)
					failing = true
				}
				if !w.sleep(ctx, jitter(delay), nil) {
					return
				}
				delay = min(2*delay, q.cfg.RetryMax)
			}
			continue
		}
		if failing {
			log.Info("reading the event queue again")
			failing, delay = false, q.cfg.RetryMin
		}
		if len(msgs) > 0 {
			if !q.deliver(ctx, w, msgs) {
				return
			}
			continue
		}
		if claimFrom == "" {
			idle := min(q.cfg.PollInterval, time.Until(nextSweep))
			if !w.sleep(ctx, max(idle, time.Millisecond), q.wake[s]) {
				return
			}
		}
	}
}

// ensureGroup creates the shard's consumer group, from the stream's start so that events
// queued before any sender ran are sent too.
func (q *Queue) ensureGroup(ctx context.Context, s int) error {
	err := q.rdb.XGroupCreateMkStream(ctx, q.keys.stream(s), q.keys.group(), "0").Err()
	if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return err
	}
	return nil
}

func isNoGroup(err error) bool { return strings.HasPrefix(err.Error(), "NOGROUP") }

// read returns up to BatchSize events of shard s no consumer has read yet. It does not
// block in Redis: a blocked read would hold a connection of the shared pool per shard.
func (q *Queue) read(ctx context.Context, s int) ([]redis.XMessage, error) {
	res, err := q.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{
		Group:    q.keys.group(),
		Consumer: q.cfg.Node,
		Streams:  []string{q.keys.stream(s), ">"},
		Count:    int64(q.cfg.BatchSize),
		Block:    -1,
	}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if len(res) == 0 {
		return nil, nil
	}
	return res[0].Messages, nil
}

// claim takes over, from cursor on, up to BatchSize events pending for at least minIdle on
// any consumer, and returns the next cursor, "" when the pass is complete. Redis drops from
// the pending list, without returning them, entries trimmed from the stream meanwhile.
func (q *Queue) claim(ctx context.Context, s int, cursor string, minIdle time.Duration) ([]redis.XMessage, string, error) {
	msgs, next, err := q.rdb.XAutoClaim(ctx, &redis.XAutoClaimArgs{
		Stream:   q.keys.stream(s),
		Group:    q.keys.group(),
		Consumer: q.cfg.Node,
		MinIdle:  minIdle,
		Start:    cursor,
		Count:    int64(q.cfg.BatchSize),
	}).Result()
	if err != nil {
		return nil, cursor, err
	}
	if next == "0-0" {
		next = ""
	}
	return msgs, next, nil
}

// pruneConsumers deletes the consumers of shard s that left nothing pending and have been
// idle longer than a lease, so that the group does not collect one consumer per process
// ever started. A consumer that is still alive and reads again is simply recreated.
func (q *Queue) pruneConsumers(ctx context.Context, s int) {
	stream, group := q.keys.stream(s), q.keys.group()
	consumers, err := q.rdb.XInfoConsumers(ctx, stream, group).Result()
	if err != nil {
		return
	}
	for _, c := range consumers {
		if c.Name != q.cfg.Node && c.Pending == 0 && c.Idle > q.cfg.ClaimIdle {
			_ = q.rdb.XGroupDelConsumer(ctx, stream, group, c.Name).Err()
		}
	}
}

// deliver sends msgs in order, in requests of at most BatchSize events and MaxBatchBytes.
// It returns false when the worker must stop; what it did not send stays pending on this
// consumer, for the shard's next holder to claim.
func (q *Queue) deliver(ctx context.Context, w *worker, msgs []redis.XMessage) bool {
	batch := make([]entry, 0, len(msgs))
	var malformed []entry
	for _, m := range msgs {
		e, ok := newEntry(m)
		if !ok {
			malformed = append(malformed, e)
			continue
		}
		batch = append(batch, e)
	}
	if len(malformed) > 0 && q.ack(ctx, w, malformed) {
		q.stats.malformed.Add(int64(len(malformed)))
		q.log.Warn("dropped stream entries that hold no event", "shard", w.shard, "count", len(malformed))
	}
	for len(batch) > 0 {
		if w.stopping(ctx) {
			return false
		}
		n := q.fit(batch)
		if !q.sendBatch(ctx, w, batch[:n]) {
			return false
		}
		batch = batch[n:]
	}
	return true
}

// fit returns how many of the first events fit in one request: at most BatchSize, at most
// MaxBatchBytes of body, and at least one.
func (q *Queue) fit(batch []entry) int {
	size := len(batchHead) + len(batchTail)
	for i, e := range batch {
		size += len(e.body) + 1
		if i == q.cfg.BatchSize || (i > 0 && size > q.cfg.MaxBatchBytes) {
			return i
		}
	}
	return len(batch)
}

// sendBatch posts one batch until the webhook acknowledges it, retrying with exponential
// backoff and jitter and dropping the events that pass MaxAge meanwhile. It returns false
// when the worker must stop first.
func (q *Queue) sendBatch(ctx context.Context, w *worker, batch []entry) bool {
	delay := q.cfg.RetryMin
	failed := false
	for {
		batch = q.dropExpired(ctx, w, batch)
		if len(batch) == 0 {
			return true
		}
		if !w.leaseValid() {
			return false
		}
		err := q.post(ctx, w.shard, batch)
		if err == nil {
			if failed {
				q.log.Info("webhook accepts events again", "shard", w.shard)
			}
			q.stats.lag.Store(int64(time.Since(time.UnixMilli(batch[0].ms))))
			if q.ack(ctx, w, batch) {
				q.stats.sent.Add(int64(len(batch)))
			}
			return true
		}
		if ctx.Err() != nil {
			return false // shutdown cut the request short; the webhook is not to blame
		}
		q.stats.retried.Add(1)
		if !failed {
			// Once per outage and shard; the rest is in Stats.Retried and OnAttempt.
			q.log.Warn("webhook request failed; retrying with backoff", "shard", w.shard, "events", len(batch), "err", err)
			failed = true
		}
		if !w.sleep(ctx, jitter(delay), nil) {
			return false
		}
		delay = min(2*delay, q.cfg.RetryMax)
	}
}

// dropExpired acknowledges and deletes, unsent, the events of batch older than MaxAge, and
// returns the rest.
func (q *Queue) dropExpired(ctx context.Context, w *worker, batch []entry) []entry {
	cutoff := time.Now().Add(-q.cfg.MaxAge).UnixMilli()
	var old []entry
	keep := batch[:0]
	for _, e := range batch {
		if e.ms < cutoff {
			old = append(old, e)
		} else {
			keep = append(keep, e)
		}
	}
	if len(old) > 0 && q.ack(ctx, w, old) {
		q.stats.expired.Add(int64(len(old)))
		q.log.Warn("dropped undelivered events older than the maximum age", "shard", w.shard, "count", len(old), "max_age", q.cfg.MaxAge)
	}
	return keep
}

// ack acknowledges and deletes events, and releases the bytes they held in the budget, in
// one script (ack.lua). Deleting delivered events keeps the queue's memory to what is
// undelivered. The script releases an entry's bytes only when it deletes the entry, so it
// is idempotent and retried while the lease is held; the ack is attempted even after
// shutdown began, since the webhook already has the events. It reports success; on failure
// the events stay pending and are sent again by a later claim (at least once).
func (q *Queue) ack(ctx context.Context, w *worker, batch []entry) bool {
	args := make([]any, 1, 1+3*len(batch))
	args[0] = q.keys.group()
	for _, e := range batch {
		args = append(args, e.id, e.user, e.cost)
	}
	delay := q.cfg.RetryMin
	for {
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ackTimeout)
		err := ackScript.Run(actx, q.rdb, q.keys.queue(w.shard), args...).Err()
		cancel()
		if err == nil {
			return true
		}
		if ctx.Err() != nil || !w.leaseValid() || !sleep(ctx, jitter(delay)) {
			q.log.Warn("could not acknowledge events; they will be sent again", "shard", w.shard, "count", len(batch), "err", err)
			return false
		}
		delay = min(2*delay, q.cfg.RetryMax)
	}
}

// sleep waits d unless ctx ends first, which it reports.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// jitter returns a duration in [d/2, d]: exponential backoff with jitter, so that senders
// failing together do not retry together.
func jitter(d time.Duration) time.Duration { return d/2 + rand.N(d/2+1) }
