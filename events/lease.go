package events

import (
	"context"
	"errors"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// A shard is sent by one sender instance at a time, the holder of its lease. That keeps a
// user's events in order at the webhook (a user.offline can never overtake the user.online
// before it, even while the webhook fails and requests are retried), and makes one request
// in flight per shard the deployment's whole concurrency. Leases are spread evenly: every
// sender holds at most ceil(Shards / live senders). When a sender dies its leases expire
// after ClaimIdle, another sender takes them and first claims every event left pending on
// the shard, oldest first, then reads on.

// worker is one shard this instance holds the lease of, and the goroutine sending it.
type worker struct {
	shard      int
	validUntil atomic.Int64 // unix nanos until which the lease is surely still ours
	leaving    atomic.Bool  // handed over or lost: no longer counted as held
	stop       chan struct{}
	stopOnce   sync.Once
	cancel     context.CancelFunc
	done       chan struct{}
}

// leaseValid reports whether the lease is surely still held; past that another instance
// may send the shard, so the worker stops before its next request.
func (w *worker) leaseValid() bool { return time.Now().UnixNano() < w.validUntil.Load() }

// handOver asks the worker to finish its current request and give the shard up.
func (w *worker) handOver() {
	w.leaving.Store(true)
	w.stopOnce.Do(func() { close(w.stop) })
}

// stopping reports whether the worker must end: shutdown, a lost lease, or a hand-over.
func (w *worker) stopping(ctx context.Context) bool {
	select {
	case <-ctx.Done():
		return true
	case <-w.stop:
		return true
	default:
		return !w.leaseValid()
	}
}

// sleep waits d, or less if the worker must stop, which it reports.
func (w *worker) sleep(ctx context.Context, d time.Duration, wake <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-w.stop:
		return false
	case <-wake:
	case <-t.C:
	}
	return true
}

// manager acquires, renews, balances and hands over this instance's leases. It runs on
// Run's goroutine only, so workers needs no lock.
type manager struct {
	q       *Queue
	workers map[int]*worker
	wg      sync.WaitGroup
	failing bool // the last round could not reach Redis; logged once per outage
}

// Run sends the queue to the webhook until ctx ends, and returns nil then, once every
// goroutine it started has returned and its leases are released for other nodes to take
// at once. Every node runs it. Without a URL it only waits for ctx. Redis or webhook
// failures never end it: they are logged, counted and retried.
func (q *Queue) Run(ctx context.Context) error {
	if !q.running.CompareAndSwap(false, true) {
		return errors.New("events: Run called twice")
	}
	if !q.enabled() {
		<-ctx.Done()
		return nil
	}
	m := &manager{q: q, workers: make(map[int]*worker)}
	tick := time.NewTicker(q.cfg.ClaimIdle / 3)
	defer tick.Stop()
	for {
		m.round(ctx)
		select {
		case <-ctx.Done():
			m.shutdown(ctx)
			return nil
		case <-tick.C:
		}
	}
}

// round is one pass of lease upkeep: forget ended workers, announce this sender, renew
// held leases, then hand over or acquire shards towards the fair share.
func (m *manager) round(ctx context.Context) {
	q := m.q
	for s, w := range m.workers {
		select {
		case <-w.done:
			delete(m.workers, s)
		default:
		}
	}
	defer func() { q.stats.shards.Store(int64(m.held())) }()

	senders, err := m.heartbeat(ctx)
	if err != nil {
		m.failed(ctx, err)
		return
	}
	ttl := strconv.FormatInt(q.cfg.ClaimIdle.Milliseconds(), 10)
	for s, w := range m.workers {
		if w.leaving.Load() {
			continue
		}
		start := time.Now()
		held, err := leaseScript.Run(ctx, q.rdb, []string{q.keys.owner(s)}, q.token, ttl).Int()
		if err != nil {
			m.failed(ctx, err)
			return // the workers stop by themselves if their leases lapse
		}
		if held == 1 {
			w.validUntil.Store(start.Add(q.cfg.ClaimIdle).UnixNano())
			continue
		}
		q.log.Warn("lost the lease of an event shard (expired or taken over); stopping its sender", "shard", s)
		w.leaving.Store(true)
		w.cancel()
	}
	if m.failing {
		m.failing = false
		q.log.Info("event sender reaches Redis again")
	}

	target := (q.cfg.Shards + senders - 1) / senders
	held := m.held()
	for s, w := range m.workers {
		if held <= target {
			break
		}
		if !w.leaving.Load() {
			w.handOver()
			held--
			q.log.Debug("handing an event shard over to balance senders", "shard", s, "senders", senders)
		}
	}
	if held < target {
		if err := m.acquire(ctx, target-held); err != nil {
			m.failed(ctx, err)
		}
	}
}

// held counts the leases this instance keeps (not those being handed over or lost).
func (m *manager) held() int {
	n := 0
	for _, w := range m.workers {
		if !w.leaving.Load() {
			n++
		}
	}
	return n
}

// heartbeat records this sender as live and returns how many senders are live.
func (m *manager) heartbeat(ctx context.Context) (int, error) {
	q := m.q
	key := q.keys.senders()
	now := time.Now()
	var live *redis.IntCmd
	_, err := q.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.ZAdd(ctx, key, redis.Z{Score: float64(now.UnixMilli()), Member: q.token})
		p.ZRemRangeByScore(ctx, key, "-inf", "("+strconv.FormatInt(now.Add(-q.cfg.ClaimIdle).UnixMilli(), 10))
		live = p.ZCard(ctx, key)
		p.PExpire(ctx, key, 2*q.cfg.ClaimIdle)
		return nil
	})
	if err != nil {
		return 0, err
	}
	return max(1, int(live.Val())), nil
}

// acquire takes up to n free shards, in random order so that senders starting together
// do not all race for the same ones, and starts their workers.
func (m *manager) acquire(ctx context.Context, n int) error {
	q := m.q
	var free []int
	exists := make(map[int]*redis.IntCmd)
	_, err := q.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for s := range q.cfg.Shards {
			if m.workers[s] == nil {
				exists[s] = p.Exists(ctx, q.keys.owner(s))
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for s, c := range exists {
		if c.Val() == 0 {
			free = append(free, s)
		}
	}
	rand.Shuffle(len(free), func(i, j int) { free[i], free[j] = free[j], free[i] })
	for _, s := range free {
		if n == 0 {
			break
		}
		start := time.Now()
		ok, err := q.rdb.SetNX(ctx, q.keys.owner(s), q.token, q.cfg.ClaimIdle).Result()
		if err != nil {
			return err
		}
		if ok {
			m.start(ctx, s, start)
			n--
		}
	}
	return nil
}

// start runs the worker of shard s, whose lease was taken at start.
func (m *manager) start(ctx context.Context, s int, start time.Time) {
	wctx, cancel := context.WithCancel(ctx)
	w := &worker{shard: s, stop: make(chan struct{}), cancel: cancel, done: make(chan struct{})}
	w.validUntil.Store(start.Add(m.q.cfg.ClaimIdle).UnixNano())
	m.workers[s] = w
	m.wg.Go(func() {
		defer close(w.done)
		defer cancel()
		m.q.send(wctx, w)
	})
}

func (m *manager) failed(ctx context.Context, err error) {
	if ctx.Err() != nil || m.failing {
		return
	}
	m.failing = true
	m.q.log.Warn("event sender cannot reach Redis; retrying", "err", err)
}

// shutdown waits for every worker (ctx has ended, so they are ending) and withdraws this
// sender, so the others take over its share at their next round.
func (m *manager) shutdown(ctx context.Context) {
	m.wg.Wait()
	q := m.q
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	_ = q.rdb.ZRem(cctx, q.keys.senders(), q.token).Err()
	q.stats.shards.Store(0)
}

// release gives up the lease of w's shard if this instance still holds it, so another
// sender can take it without waiting for it to expire.
func (q *Queue) release(ctx context.Context, w *worker) {
	w.validUntil.Store(0)
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	if err := leaseScript.Run(cctx, q.rdb, []string{q.keys.owner(w.shard)}, q.token, "0").Err(); err != nil {
		q.log.Debug("releasing an event shard lease", "shard", w.shard, "err", err)
	}
}
