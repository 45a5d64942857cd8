package subscriptions

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
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

// pendingWait is the WAIT of one exec: the last pipeline's, since a WAIT covers every write
// the server took before it, the first pipeline's included when NOSCRIPT sent a second.
type pendingWait struct {
	w   replicaWait
	ctx context.Context
	cmd *redis.Cmd
}

// start begins the wait of one exec; with no replicas to wait for it does nothing.
func (w replicaWait) start(ctx context.Context) *pendingWait { return &pendingWait{w: w, ctx: ctx} }

// queue adds the WAIT at the end of a pipeline (pipeline.Scripts.After).
func (p *pendingWait) queue(pipe redis.Pipeliner) {
	if p.w.n > 0 {
		p.cmd = pipe.Do(p.ctx, "WAIT", p.w.n, p.w.timeout.Milliseconds())
	}
}

// check marks the stored deliveries of batch unreplicated when the WAIT fell short of the
// replicas asked for, or did not answer.
func (p *pendingWait) check(batch []*delivery) {
	if p.w.n == 0 {
		return
	}
	if p.cmd != nil {
		if n, err := p.cmd.Int64(); err == nil && n >= int64(p.w.n) {
			return
		}
	}
	for _, d := range batch {
		for x := d; x != nil; x = x.copy {
			if x.err == nil && !x.replayed {
				x.unreplicated = true
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
// short of the replicas asked for, on a call that stored something.
func (p *pendingWait) checkRoom(ctx context.Context) {
	short, _ := ctx.Value(shortfallKey{}).(*atomic.Bool)
	if p.w.n == 0 || short == nil {
		return
	}
	if p.cmd != nil {
		if n, err := p.cmd.Int64(); err == nil && n >= int64(p.w.n) {
			return
		}
	}
	short.Store(true)
}
