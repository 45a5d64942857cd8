package events

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// scriptCall is one script call waiting for its batch.
type scriptCall struct {
	script *redis.Script
	keys   []string
	args   []any
	res    []int64
	err    error
	// wake answers the call (false) or hands it the lead of the next batch (true).
	wake chan bool
}

// batchTimeout bounds one batch's round trip: callers do not wait on each other's contexts.
const batchTimeout = 10 * time.Second

// scriptBatcher runs script calls made at the same time in shared pipelines. A connect
// storm makes one presence call per connection; alone, each would pay a round trip (a
// write and a read on both sides). There is no goroutine of its own: the first caller
// leads, yields once so that the callers about to arrive join, and sends the batch; a
// caller that arrives meanwhile waits, and the first of them leads the next batch. Each
// caller leads at most once, and only a batch its own call is in.
type scriptBatcher struct {
	rdb redis.UniversalClient

	mu      sync.Mutex
	pending []*scriptCall
	busy    bool // a leader is sending a batch
}

// maxScriptBatch bounds one pipeline; more than that waits for the next one.
const maxScriptBatch = 512

var scriptCallPool = sync.Pool{New: func() any { return &scriptCall{wake: make(chan bool, 1)} }}

// run calls script with keys and args, in a pipeline shared with concurrent calls, and
// returns its integer array answer.
func (b *scriptBatcher) run(ctx context.Context, script *redis.Script, keys []string, args ...any) ([]int64, error) {
	c := scriptCallPool.Get().(*scriptCall)
	c.script, c.keys, c.args = script, keys, args
	b.mu.Lock()
	b.pending = append(b.pending, c)
	lead := !b.busy
	b.busy = true
	b.mu.Unlock()
	if !lead {
		lead = <-c.wake
	}
	if lead {
		runtime.Gosched()
		b.mu.Lock()
		n := min(len(b.pending), maxScriptBatch)
		batch := b.pending[:n:n]
		b.pending = append([]*scriptCall(nil), b.pending[n:]...)
		b.mu.Unlock()
		b.exec(ctx, batch)
		b.mu.Lock()
		if len(b.pending) == 0 {
			b.busy = false
		} else {
			b.pending[0].wake <- true
		}
		b.mu.Unlock()
		<-c.wake // exec answered this call too
	}
	res, err := c.res, c.err
	*c = scriptCall{wake: c.wake}
	scriptCallPool.Put(c)
	return res, err
}

// exec sends batch as one pipeline and answers every call in it. A call that failed with
// NOSCRIPT did not run, so it is run again once the script is loaded (after a Redis
// restart or failover emptied the script cache).
func (b *scriptBatcher) exec(ctx context.Context, batch []*scriptCall) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), batchTimeout)
	defer cancel()
	todo := batch
	for attempt := 0; len(todo) > 0; attempt++ {
		pipe := b.rdb.Pipeline()
		cmds := make([]*redis.Cmd, len(todo))
		for i, c := range todo {
			cmds[i] = pipe.EvalSha(ctx, c.script.Hash(), c.keys, c.args...)
		}
		_, _ = pipe.Exec(ctx)
		var again []*scriptCall
		loaded := map[string]error{}
		for i, c := range todo {
			res, err := cmds[i].Int64Slice()
			if err != nil && attempt == 0 && isNoScript(err) {
				lerr, ok := loaded[c.script.Hash()]
				if !ok {
					lerr = c.script.Load(ctx, b.rdb).Err()
					loaded[c.script.Hash()] = lerr
				}
				if lerr == nil {
					again = append(again, c)
					continue
				}
				err = lerr
			}
			c.res, c.err = res, err
			c.wake <- false
		}
		todo = again
	}
}

func isNoScript(err error) bool {
	var rerr redis.Error
	return errors.As(err, &rerr) && strings.HasPrefix(rerr.Error(), "NOSCRIPT")
}
