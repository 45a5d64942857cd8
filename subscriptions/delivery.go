package subscriptions

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

//go:embed delivery.lua
var deliveryLua string

// deliveryScript is loaded at startup and called by its SHA inside pipelines, where go-redis
// has no EVAL fallback (LIBS.md pitfall 16).
var deliveryScript = redis.NewScript(deliveryLua)

// maxPipeline bounds how many deliveries share one round trip, and batchGroup how many one
// script call delivers.
const (
	maxPipeline = 512
	batchGroup  = 64
)

// delivery is one queued append+publish, answered on done.
type delivery struct {
	stream, channel string
	bucket          int // groups deliveries into script calls: one slot per call on a cluster
	tail            string
	id              string
	err             error
	done            chan struct{}
}

var deliveryPool = sync.Pool{New: func() any { return &delivery{done: make(chan struct{}, 1)} }}

// publisher runs the delivery script for concurrent callers, sharing round trips: each worker
// takes whatever is queued (up to maxPipeline) and sends it as one pipeline, so that under
// load the node approaches Redis's pipelined ceiling instead of one round trip per message.
// The script is never retried by go-redis (the client must have MaxRetries -1): a timed-out
// call may have run, and running it again would store the message twice.
type publisher struct {
	rdb         redis.UniversalClient
	obs         Observer
	deadline    func() string // the script's deadline for a call made now
	publishCmd  string
	historySize string
	historyTTL  string

	mu     sync.RWMutex // guards closed against sends on queue
	closed bool
	queue  chan *delivery
}

func newPublisher(rdb redis.UniversalClient, cfg Config, publishCmd string, deadline func() string) *publisher {
	return &publisher{
		rdb:         rdb,
		obs:         cfg.Observer,
		deadline:    deadline,
		publishCmd:  publishCmd,
		historySize: strconv.FormatInt(cfg.HistorySize, 10),
		historyTTL:  strconv.FormatInt(cfg.HistoryTTL.Milliseconds(), 10),
		queue:       make(chan *delivery, 4*maxPipeline),
	}
}

// publish appends and publishes one message and returns its stream id.
func (p *publisher) publish(stream, channel string, bucket int, tail string) (string, error) {
	d := deliveryPool.Get().(*delivery)
	d.stream, d.channel, d.bucket, d.tail = stream, channel, bucket, tail
	p.mu.RLock()
	if p.closed {
		p.mu.RUnlock()
		deliveryPool.Put(d)
		return "", ErrClosed
	}
	p.queue <- d
	p.mu.RUnlock()
	<-d.done
	id, err := d.id, d.err
	*d = delivery{done: d.done}
	deliveryPool.Put(d)
	return id, err
}

// run drains the queue with workers until close is called and the queue is empty.
func (p *publisher) run(ctx context.Context, workers int) {
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			batch := make([]*delivery, 0, maxPipeline)
			for d := range p.queue {
				batch = append(batch[:0], d)
				// Let the goroutines that are about to publish run first: on a busy node
				// they join this round trip instead of each paying for one of their own.
				runtime.Gosched()
			fill:
				for len(batch) < maxPipeline {
					select {
					case d, ok := <-p.queue:
						if !ok {
							break fill
						}
						batch = append(batch, d)
					default:
						break fill
					}
				}
				p.exec(ctx, batch)
			}
		})
	}
	wg.Wait()
}

// close stops accepting deliveries; run returns once what was queued has been sent.
func (p *publisher) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.closed {
		p.closed = true
		close(p.queue)
	}
}

// exec sends a batch as one pipeline and answers every delivery in it. Deliveries are
// grouped (by bucket on Redis Cluster) into calls of the batch script of up to 64 each, so
// that a busy node pays one script call, not one per message; order is kept within a group.
func (p *publisher) exec(ctx context.Context, batch []*delivery) {
	todo := groupBy(batch, batchGroup, func(d *delivery) int { return d.bucket })
	for attempt := 0; ; attempt++ {
		pipe := p.rdb.Pipeline()
		cmds := make([]*redis.Cmd, len(todo))
		deadline := p.deadline()
		for g, group := range todo {
			keys := make([]string, 0, 2*len(group))
			args := make([]any, 0, 4+len(group))
			args = append(args, p.historySize, p.historyTTL, p.publishCmd, deadline)
			for _, d := range group {
				keys = append(keys, d.stream, d.channel)
				args = append(args, d.tail)
			}
			cmds[g] = pipe.EvalSha(ctx, batchScript.Hash(), keys, args...)
		}
		start := time.Now()
		_, err := pipe.Exec(ctx)
		p.obs.ObservePublish(time.Since(start), len(batch), err)
		// A call that failed with NOSCRIPT did not run, so running exactly those again is
		// safe; this happens after a Redis restart or failover dropped the script cache.
		var again [][]*delivery
		for g, group := range todo {
			ids, err := cmds[g].Slice()
			if err != nil && attempt == 0 && isNoScript(err) {
				again = append(again, group)
				continue
			}
			for k, d := range group {
				switch {
				case err != nil:
					d.err = fmt.Errorf("%w: %w", ErrUnavailable, err)
				case k < len(ids):
					switch v := ids[k].(type) {
					case string:
						d.id = v
					case error: // this message was not stored; the others were
						d.err = fmt.Errorf("%w: %w", ErrUnavailable, v)
					default:
						d.err = fmt.Errorf("%w: the batch script answered %T", ErrUnavailable, v)
					}
				default:
					d.err = fmt.Errorf("%w: the batch script answered %d ids for %d messages", ErrUnavailable, len(ids), len(group))
				}
				d.done <- struct{}{}
			}
		}
		if len(again) == 0 {
			return
		}
		if err := batchScript.Load(ctx, p.rdb).Err(); err != nil {
			for _, group := range again {
				for _, d := range group {
					d.err = fmt.Errorf("%w: load batch script: %w", ErrUnavailable, err)
					d.done <- struct{}{}
				}
			}
			return
		}
		todo = again
	}
}

func isNoScript(err error) bool {
	var rerr redis.Error
	return errors.As(err, &rerr) && strings.HasPrefix(rerr.Error(), "NOSCRIPT")
}
