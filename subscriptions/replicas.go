package subscriptions

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard-dev/switchboard/internal/pipeline"
)

// ErrNotReplicated means a message was stored and published on the Redis master, with the
// id returned alongside, but fewer replicas than Config.WaitReplicas confirmed it within
// the timeout: if the master fails now, the message may be lost. The send is not to be
// repeated blindly (it was delivered); the caller is told so honestly.
var ErrNotReplicated = errors.New("stored on the master, but not confirmed by enough replicas in time")

// defaultWaitTimeout bounds a WAIT when Config.WaitReplicasTimeout is unset: well below
// go-redis's 3 s read timeout, which a pipeline's WAIT must not outlast.
const defaultWaitTimeout = time.Second

// replicaWait is the publisher's WAIT: one per pipeline of deliveries, after them on the
// same connection, so that a pipeline of 512 messages pays one wait, not 512.
type replicaWait struct {
	n       int
	timeout time.Duration
}

func newReplicaWait(cfg Config) replicaWait {
	return replicaWait{n: max(cfg.WaitReplicas, 0), timeout: cmpOr(cfg.WaitReplicasTimeout, defaultWaitTimeout)}
}

func cmpOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// pendingWait is the WAIT of one exec: after each pipeline it sends, since a WAIT covers
// the writes its connection made before it. When NOSCRIPT made pipeline.Scripts send a
// second pipeline, its WAIT is the one that counts, and covers the first's writes too (the
// server took them earlier).
type pendingWait struct {
	w     replicaWait
	ctx   context.Context
	cmd   *redis.Cmd
	short []bool // per call, after exec
}

// start begins the wait of one exec; with no replicas to wait for it does nothing.
func (w replicaWait) start(ctx context.Context) *pendingWait { return &pendingWait{w: w, ctx: ctx} }

// queue adds the WAIT at the end of a pipeline (pipeline.Scripts.After).
func (p *pendingWait) queue(pipe redis.Pipeliner) {
	if p.w.n > 0 {
		p.cmd = pipe.Do(p.ctx, "WAIT", p.w.n, p.w.timeout.Milliseconds())
	}
}

// fellShort reports whether the last queued WAIT confirmed fewer replicas than asked.
func (p *pendingWait) fellShort() bool {
	if p.cmd != nil {
		if n, err := p.cmd.Int64(); err == nil && n >= int64(p.w.n) {
			return false
		}
	}
	return true
}

// exec sends n script calls as pipeline.Scripts does, each pipeline ending with the WAIT,
// and records which calls' wait fell short. On Redis Cluster a WAIT answers for its own
// master only, so the calls are split by master (key(i) is a key of call i) into one
// pipeline each, sent at once; a redirect (MOVED during a slot migration) is then not
// followed, and the call fails with nothing stored.
func (p *pendingWait) exec(rdb redis.UniversalClient, n int, key func(int) string,
	observe func(time.Duration, error), queue pipeline.Queue) {
	p.short = make([]bool, n)
	cc, cluster := rdb.(*redis.ClusterClient)
	if p.w.n == 0 || !cluster {
		_ = pipeline.Scripts{Client: rdb, After: p.queue, Observe: observe}.Exec(p.ctx, n, queue)
		if p.w.n > 0 && p.fellShort() {
			for i := range p.short {
				p.short[i] = true
			}
		}
		return
	}
	byMaster := map[*redis.Client][]int{}
	for i := range n {
		m, err := cc.MasterForKey(p.ctx, key(i))
		if err != nil {
			m = nil // sent through the cluster client, unwaited: reported short
		}
		byMaster[m] = append(byMaster[m], i)
	}
	var wg sync.WaitGroup
	for m, calls := range byMaster {
		wg.Go(func() {
			sub := &pendingWait{w: p.w, ctx: p.ctx}
			client := redis.UniversalClient(cc)
			if m != nil {
				client = m
			}
			_ = pipeline.Scripts{Client: client, After: sub.queue, Observe: observe}.Exec(p.ctx, len(calls),
				func(pipe redis.Pipeliner, j int) (redis.Cmder, *redis.Script) { return queue(pipe, calls[j]) })
			if m == nil || sub.fellShort() {
				for _, i := range calls {
					p.short[i] = true
				}
			}
		})
	}
	wg.Wait()
}

// check marks the stored deliveries of the groups whose call's wait fell short.
func (p *pendingWait) check(groups [][]*delivery) {
	for g, group := range groups {
		if !p.short[g] {
			continue
		}
		for _, d := range group {
			for x := d; x != nil; x = x.copy {
				if x.err == nil && !x.replayed {
					x.unreplicated = true
				}
			}
		}
	}
}

// shortfallKey carries, through a room send's context, the flag its fan-out calls raise
// when their wait fell short: a fan-out spans many pipelines, some of them in parallel.
type shortfallKey struct{}

// watchReplication returns ctx carrying a fresh shortfall flag.
func watchReplication(ctx context.Context) (context.Context, *atomic.Bool) {
	short := new(atomic.Bool)
	return context.WithValue(ctx, shortfallKey{}, short), short
}

// checkRoom raises the flag of ctx (watchReplication) when the wait of a fan-out call fell
// short of the replicas asked for.
func (p *pendingWait) checkRoom() {
	short, _ := p.ctx.Value(shortfallKey{}).(*atomic.Bool)
	if short == nil {
		return
	}
	for _, s := range p.short {
		if s {
			short.Store(true)
			return
		}
	}
}
