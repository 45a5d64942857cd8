package events

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard-dev/switchboard/internal/redistest"
	"github.com/switchboard-dev/switchboard/internal/testutil"
)

// pipelineGate counts the script pipelines and holds the first one until released.
type pipelineGate struct {
	pipelines atomic.Int64
	first     atomic.Int64 // commands in the first pipeline
	release   chan struct{}
}

func (g *pipelineGate) DialHook(next redis.DialHook) redis.DialHook { return next }
func (g *pipelineGate) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return next
}
func (g *pipelineGate) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if len(cmds) == 0 || cmds[0].Name() != "evalsha" { // a new connection's handshake
			return next(ctx, cmds)
		}
		if g.pipelines.Add(1) == 1 {
			g.first.Store(int64(len(cmds)))
			<-g.release
		}
		return next(ctx, cmds)
	}
}

var incrScript = redis.NewScript(`return {redis.call('INCRBY', KEYS[1], ARGV[1])}`)

func TestScriptBatcherSharesRoundTripsAndAnswersEachCall(t *testing.T) {
	t.Parallel()
	rdb := newRedis(t, redistest.Start(t))
	gate := &pipelineGate{release: make(chan struct{})}
	rdb.AddHook(gate)
	b := newScriptBatcher(rdb)
	ctx := context.Background()
	// The script is not loaded: the first batch fails with NOSCRIPT, which must load it and
	// run exactly those calls again, once.
	const calls = 300
	results := make([][]int64, calls)
	errs := make([]error, calls)
	var wg sync.WaitGroup
	for i := range calls {
		wg.Go(func() {
			results[i], errs[i] = b.run(ctx, incrScript, []string{"k" + strconv.Itoa(i%10)}, i+1)
		})
	}
	// The first batch is held; wait until every other call is queued behind it.
	testutil.Eventually(t, 10*time.Second, func() error {
		n, _ := b.calls.Pending()
		if first := gate.first.Load(); first > 0 && int(first)+n == calls {
			return nil
		}
		return fmt.Errorf("only %d calls in the first batch and %d queued", gate.first.Load(), n)
	})
	close(gate.release)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if len(results[i]) != 1 || results[i][0] < int64(i+1) {
			t.Fatalf("call %d answered %v", i, results[i])
		}
	}
	// Each key was incremented by each of its calls exactly once.
	for k := range 10 {
		want := 0
		for i := k; i < calls; i += 10 {
			want += i + 1
		}
		got, err := rdb.Get(ctx, "k"+strconv.Itoa(k)).Int()
		if err != nil || got != want {
			t.Fatalf("k%d = %d (%v), want %d: a call ran twice or not at all", k, got, err, want)
		}
	}
	// The held batch, its second attempt after NOSCRIPT, and (unless every call joined the
	// first) one batch of all the calls queued behind it (at most 512 fit one): at most 3,
	// where one round trip each would have been 300.
	if n := gate.pipelines.Load(); n > 3 {
		t.Fatalf("%d pipelines for %d calls, want at most 3", n, calls)
	}
	if pending, sending := b.calls.Pending(); sending != 0 || pending != 0 {
		t.Fatalf("batcher left busy %v with %d pending", sending != 0, pending)
	}
}

func TestScriptBatcherReportsRedisDown(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := newRedis(t, srv)
	b := newScriptBatcher(rdb)
	ctx := context.Background()
	if _, err := b.run(ctx, incrScript, []string{"k"}, 1); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	var wg sync.WaitGroup
	errs := make([]error, 20)
	for i := range errs {
		wg.Go(func() { _, errs[i] = b.run(ctx, incrScript, []string{"k"}, 1) })
	}
	wg.Wait()
	for i, err := range errs {
		if err == nil {
			t.Fatalf("call %d succeeded with Redis down", i)
		}
	}
	if pending, sending := b.calls.Pending(); sending != 0 || pending != 0 {
		t.Fatalf("batcher left busy %v with %d pending after failing", sending != 0, pending)
	}
}
