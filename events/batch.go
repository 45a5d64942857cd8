package events

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard-dev/switchboard/internal/pipeline"
)

// scriptCall is one script call and, once sent, its answer.
type scriptCall struct {
	script *redis.Script
	keys   []string
	args   []any
	res    []int64
	err    error
}

// batchTimeout bounds one batch's round trip: callers do not wait on each other's contexts.
const batchTimeout = 10 * time.Second

// maxScriptBatch bounds one pipeline; more than that waits for the next one.
const maxScriptBatch = 512

// scriptBatcher runs script calls made at the same time in shared pipelines. A connect
// storm makes one presence call per connection; alone, each would pay a round trip (a
// write and a read on both sides). It has no goroutine of its own: the callers lead the
// batches in turn (pipeline.Config.CallersLead).
type scriptBatcher struct {
	rdb   redis.UniversalClient
	calls *pipeline.Batcher[scriptCall]
}

func newScriptBatcher(rdb redis.UniversalClient) *scriptBatcher {
	b := &scriptBatcher{rdb: rdb}
	b.calls = pipeline.New(pipeline.Config[scriptCall]{Send: b.exec, MaxBatch: maxScriptBatch, CallersLead: true})
	return b
}

// run calls script with keys and args, in a pipeline shared with concurrent calls, and
// returns its integer array answer.
func (b *scriptBatcher) run(ctx context.Context, script *redis.Script, keys []string, args ...any) ([]int64, error) {
	c, err := b.calls.Do(ctx, scriptCall{script: script, keys: keys, args: args})
	if err != nil {
		return nil, err
	}
	return c.res, c.err
}

// exec sends batch as one pipeline and answers every call in it; a call the server's lost
// script cache refused runs again once the script is loaded (see pipeline.Scripts).
func (b *scriptBatcher) exec(ctx context.Context, batch []*scriptCall) {
	ctx, cancel := context.WithTimeout(ctx, batchTimeout)
	defer cancel()
	cmds := make([]*redis.Cmd, len(batch))
	_ = pipeline.Scripts{Client: b.rdb}.Exec(ctx, len(batch), func(pipe redis.Pipeliner, i int) (redis.Cmder, *redis.Script) {
		c := batch[i]
		cmds[i] = pipe.EvalSha(ctx, c.script.Hash(), c.keys, c.args...)
		return cmds[i], c.script
	})
	for i, c := range batch {
		c.res, c.err = cmds[i].Int64Slice()
	}
}
