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

// maxPipeline bounds how many deliveries share one round trip.
const maxPipeline = 512

// delivery is one queued append+publish, answered on done.
type delivery struct {
	stream, channel string
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
func (p *publisher) publish(stream, channel string, tail []byte) (string, error) {
	d := deliveryPool.Get().(*delivery)
	d.stream, d.channel, d.tail = stream, channel, string(tail)
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

// exec sends a batch as one pipeline and answers every delivery in it.
func (p *publisher) exec(ctx context.Context, batch []*delivery) {
	todo := batch
	for attempt := 0; ; attempt++ {
		pipe := p.rdb.Pipeline()
		cmds := make([]*redis.Cmd, len(todo))
		deadline := p.deadline()
		for i, d := range todo {
			cmds[i] = pipe.EvalSha(ctx, deliveryScript.Hash(), []string{d.stream, d.channel},
				p.historySize, p.historyTTL, d.tail, p.publishCmd, deadline)
		}
		start := time.Now()
		_, err := pipe.Exec(ctx)
		p.obs.ObservePublish(time.Since(start), len(todo), err)
		// A command that failed with NOSCRIPT did not run, so running exactly those again is
		// safe; this happens after a Redis restart or failover dropped the script cache.
		var again []*delivery
		for i, d := range todo {
			err := cmds[i].Err()
			if err != nil && attempt == 0 && isNoScript(err) {
				again = append(again, d)
				continue
			}
			if err != nil {
				d.err = fmt.Errorf("%w: %w", ErrUnavailable, err)
			} else {
				d.id, _ = cmds[i].Val().(string)
			}
			d.done <- struct{}{}
		}
		if len(again) == 0 {
			return
		}
		if err := deliveryScript.Load(ctx, p.rdb).Err(); err != nil {
			for _, d := range again {
				d.err = fmt.Errorf("%w: load delivery script: %w", ErrUnavailable, err)
				d.done <- struct{}{}
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
