package pipeline

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard-dev/switchboard/internal/redistest"
)

var (
	incrBy   = redis.NewScript(`return redis.call('INCRBY', KEYS[1], ARGV[1])`)
	appendTo = redis.NewScript(`return redis.call('APPEND', KEYS[1], ARGV[1])`)
)

// flushFirst flushes the server's scripts right before the first pipeline it sees, as a
// restart or failover between two round trips would.
type flushFirst struct {
	admin *redis.Client
	once  sync.Once
	pipes atomic.Int64
}

func (f *flushFirst) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (f *flushFirst) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (f *flushFirst) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if len(cmds) > 0 && cmds[0].Name() != "evalsha" && cmds[0].Name() != "incr" {
			return next(ctx, cmds) // a new connection's handshake
		}
		f.pipes.Add(1)
		var err error
		f.once.Do(func() { err = f.admin.ScriptFlush(ctx).Err() })
		if err != nil {
			return err
		}
		return next(ctx, cmds)
	}
}

func TestExecReloadsFlushedScriptsAndRunsEveryCommandExactlyOnce(t *testing.T) {
	srv := redistest.Start(t)
	admin := srv.Client(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	ctx := context.Background()
	for _, s := range []*redis.Script{incrBy, appendTo} {
		if err := s.Load(ctx, rdb).Err(); err != nil {
			t.Fatal(err)
		}
	}
	hook := &flushFirst{admin: admin}
	rdb.AddHook(hook)
	// Two scripts and a plain command, interleaved: the plain INCRs run in the first round
	// trip and must not run again; every script call fails NOSCRIPT and runs in the second.
	const n = 30
	cmds := make([]redis.Cmder, n)
	queued := make([]int, n)
	err := Scripts{Client: rdb}.Exec(ctx, n, func(p redis.Pipeliner, i int) (redis.Cmder, *redis.Script) {
		queued[i]++
		key := "k" + strconv.Itoa(i)
		switch i % 3 {
		case 0:
			cmds[i] = p.EvalSha(ctx, incrBy.Hash(), []string{key}, i+1)
			return cmds[i], incrBy
		case 1:
			cmds[i] = p.EvalSha(ctx, appendTo.Hash(), []string{key}, "x")
			return cmds[i], appendTo
		default:
			cmds[i] = p.Incr(ctx, key)
			return cmds[i], nil
		}
	})
	if err != nil {
		t.Fatalf("Exec: %v", err)
	}
	if got := hook.pipes.Load(); got != 2 {
		t.Fatalf("%d pipelines, want the first and one of the calls that did not run", got)
	}
	for i := range n {
		key := "k" + strconv.Itoa(i)
		want, wantQueued := strconv.Itoa(i+1), 2
		switch i % 3 {
		case 1:
			want = "x"
		case 2:
			want, wantQueued = "1", 1
		}
		if queued[i] != wantQueued {
			t.Fatalf("command %d queued %d times, want %d", i, queued[i], wantQueued)
		}
		if err := cmds[i].Err(); err != nil {
			t.Fatalf("command %d: %v", i, err)
		}
		if got := admin.Get(ctx, key).Val(); got != want {
			t.Fatalf("%s = %q, want %q: a command ran twice or not at all", key, got, want)
		}
	}
}

// TestBatchedScriptCallsRunExactlyOnceWhileTheScriptCacheIsFlushed runs many callers through
// a Batcher whose batches go out with Exec while the server's scripts are flushed again and
// again: a call that succeeds ran exactly once, and one that fails (flushed again between
// the load and the second attempt) did not run at all.
func TestBatchedScriptCallsRunExactlyOnceWhileTheScriptCacheIsFlushed(t *testing.T) {
	srv := redistest.Start(t)
	admin := srv.Client(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	type call struct {
		key string
		err error
	}
	b := New(Config[call]{MaxBatch: 50, Send: func(ctx context.Context, batch []*call) {
		cmds := make([]*redis.Cmd, len(batch))
		_ = Scripts{Client: rdb}.Exec(ctx, len(batch), func(p redis.Pipeliner, i int) (redis.Cmder, *redis.Script) {
			cmds[i] = p.EvalSha(ctx, incrBy.Hash(), []string{batch[i].key}, 1)
			return cmds[i], incrBy
		})
		for i, c := range batch {
			c.err = cmds[i].Err()
		}
	}})
	done := make(chan struct{})
	go func() { defer close(done); b.Run(ctx, 2) }()
	t.Cleanup(func() { cancel(); <-done })

	var flushes atomic.Int64
	stop := make(chan struct{})
	flusher := make(chan struct{})
	go func() {
		defer close(flusher)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if admin.ScriptFlush(ctx).Err() == nil {
				flushes.Add(1)
			}
		}
	}()
	const callers, each = 20, 100
	errs := make([][]error, callers)
	var wg sync.WaitGroup
	for c := range callers {
		errs[c] = make([]error, each)
		wg.Go(func() {
			for i := range each {
				r, err := b.Do(context.Background(), call{key: "c" + strconv.Itoa(c) + ":" + strconv.Itoa(i)})
				if err == nil {
					err = r.err
				}
				errs[c][i] = err
			}
		})
	}
	wg.Wait()
	close(stop)
	<-flusher
	if flushes.Load() < 2 {
		t.Fatalf("the script cache was flushed %d times during the run; the test tested nothing", flushes.Load())
	}
	ok := 0
	for c := range callers {
		for i := range each {
			key := "c" + strconv.Itoa(c) + ":" + strconv.Itoa(i)
			n, _ := admin.Get(context.Background(), key).Int()
			switch err := errs[c][i]; {
			case err == nil && n != 1:
				t.Fatalf("%s succeeded and ran %d times", key, n)
			case err != nil && !isNoScript(err):
				t.Fatalf("%s: %v", key, err)
			case err != nil && n != 0:
				t.Fatalf("%s failed with %v and ran %d times", key, err, n)
			case err == nil:
				ok++
			}
		}
	}
	if ok == 0 {
		t.Fatal("no call succeeded")
	}
	t.Logf("%d of %d calls ran, through %d flushes", ok, callers*each, flushes.Load())
}
