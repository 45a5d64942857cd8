package events

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Errors callers branch on. The service maps them to HTTP statuses and frame codes.
var (
	// ErrUnavailable means Redis could not be reached or did not answer in time. For Emit
	// and the presence calls the change may or may not have been made: the answer was lost.
	ErrUnavailable = errors.New("redis unavailable")
	// ErrInvalidEvent means an event, or a presence call's argument, is malformed; nothing
	// was queued.
	ErrInvalidEvent = errors.New("invalid event")
	// ErrQueueFull means an event did not fit in the queue's byte budget and was not queued:
	// its user's share (MaxUserBytes) or the queue (MaxBytes) is used up, typically because
	// the webhook is behind. Nothing already queued was dropped to make room. For a client's
	// event it is a refusal (no ack); the client may retry later.
	ErrQueueFull = errors.New("event queue full")
)

var (
	//go:embed lib.lua
	libLua string
	//go:embed emit.lua
	emitLua string
	//go:embed connect.lua
	connectLua string
	//go:embed disconnect.lua
	disconnectLua string
	//go:embed nodegone.lua
	nodeGoneLua string
	//go:embed lease.lua
	leaseLua string
	//go:embed ack.lua
	ackLua string
)

// Scripts are immutable values (source and SHA); Run loads them on NOSCRIPT, which is safe
// to repeat because a NOSCRIPT answer means the script did not run.
var (
	emitScript       = redis.NewScript(libLua + emitLua)
	connectScript    = redis.NewScript(libLua + connectLua)
	disconnectScript = redis.NewScript(libLua + disconnectLua)
	nodeGoneScript   = redis.NewScript(libLua + nodeGoneLua)
	leaseScript      = redis.NewScript(leaseLua)
	ackScript        = redis.NewScript(ackLua)
)

// Queue is the durable, bounded queue of backend events in Redis and the sender that
// delivers it to the webhook. Emit queues; Run sends, on every node, each shard by one node
// at a time so that a user's events reach the webhook in order; Presence counts connections
// and queues user.online and user.offline. Build it with New.
type Queue struct {
	rdb      redis.UniversalClient
	cfg      Config
	keys     keys
	log      *slog.Logger
	limits   []any  // the first arguments of every queuing script (lib.lua); budget "0": events off
	token    string // this instance in lease values: node ids may be reused by a restart
	client   *http.Client
	wake     []chan struct{} // per shard: an event was queued here
	stats    counters
	presence Presence
	running  atomic.Bool
	// refusedLogged is when a refusal was last logged (unix nanos).
	refusedLogged atomic.Int64
}

// New builds a queue on a go-redis client, which must be configured with MaxRetries -1:
// go-redis retries would replay non-idempotent scripts, and a replayed XADD queues an event
// twice under two ids that no receiver can dedupe.
func New(rdb redis.UniversalClient, cfg Config) (*Queue, error) {
	cfg.setDefaults()
	if err := checkNoRetries(rdb); err != nil {
		return nil, err
	}
	if !validID(cfg.Node) {
		return nil, fmt.Errorf("events: node id %q does not match the id pattern", cfg.Node)
	}
	if cfg.URL != "" {
		if err := checkURL(cfg.URL); err != nil {
			return nil, err
		}
	}
	q := &Queue{
		rdb:    rdb,
		cfg:    cfg,
		keys:   newKeys(cfg.Prefix, cfg.Shards),
		log:    cfg.Logger.With("node", cfg.Node),
		limits: []any{"0", "0", "0", "0"},
		token:  cfg.Node + "/" + newID(),
		client: httpClient(cfg),
		wake:   make([]chan struct{}, cfg.Shards),
	}
	if cfg.URL != "" {
		budget := max(1, cfg.MaxBytes/int64(cfg.Shards))
		client := int64(float64(budget) * (1 - cfg.SystemReserve))
		// The counters outlive every entry (MaxAge) by far, and expire with an abandoned queue.
		ttl := 2 * cfg.MaxAge.Milliseconds()
		q.limits = []any{budget, client, min(cfg.MaxUserBytes, client), ttl}
	}
	for s := range q.wake {
		q.wake[s] = make(chan struct{}, 1)
	}
	q.presence.q = q
	q.presence.calls = newScriptBatcher(rdb)
	return q, nil
}

func checkNoRetries(rdb redis.UniversalClient) error {
	var retries int
	switch c := rdb.(type) {
	case *redis.Client:
		retries = c.Options().MaxRetries
	case *redis.ClusterClient:
		retries = c.Options().MaxRetries
	default:
		return nil
	}
	if retries > 0 { // go-redis stores -1 as 0
		return errors.New("events: the redis client must have MaxRetries -1 (retries replay XADD)")
	}
	return nil
}

func httpClient(cfg Config) *http.Client {
	var c http.Client
	if cfg.Client != nil {
		c = *cfg.Client
	} else {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = cfg.Shards // one request in flight per shard
		c.Transport = t
	}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	c.Timeout = 0 // each request's context carries Timeout
	return &c
}

// enabled reports whether events are queued at all (a webhook URL is configured).
func (q *Queue) enabled() bool { return q.cfg.URL != "" }

// Emit queues an event and returns once Redis holds it: from then on it is delivered at
// least once, whatever happens to this node, so this is when a client's ack may be sent.
// It fills an empty ID, Node and Time. A malformed event gives ErrInvalidEvent; an event
// that does not fit in the byte budget gives ErrQueueFull and is counted (a client event
// past its user's share or past the part of the queue not reserved for server events; a
// server event only when the whole queue is full); an unreachable Redis gives
// ErrUnavailable, and the event may or may not be queued. A slow or dead webhook never
// slows Emit: it only writes to Redis.
func (q *Queue) Emit(ctx context.Context, e Event) error {
	if e.ID == "" {
		e.ID = newID()
	}
	if e.Node == "" {
		e.Node = q.cfg.Node
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	if err := e.validate(); err != nil {
		return err
	}
	if !q.enabled() {
		return nil
	}
	body, err := e.MarshalJSON()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidEvent, err)
	}
	s := q.keys.shard(e.User)
	system := "1"
	if e.Type == ClientEvent {
		system = "0"
	}
	args := append(q.limits[:len(q.limits):len(q.limits)], e.User, body, system)
	reason, err := emitScript.Run(ctx, q.rdb, q.keys.queue(s), args...).Text()
	if err != nil {
		return fmt.Errorf("%w: queue %s event: %w", ErrUnavailable, e.Type, err)
	}
	if reason != "" {
		q.refused(s, reason, 1)
		return fmt.Errorf("%w: %s event of %s (%s)", ErrQueueFull, e.Type, e.User, reason)
	}
	q.queued(s, 1)
	return nil
}

// Reasons an event is refused, as Emit's errors and the metrics' labels say them.
const (
	reasonQueueBytes = "queue_bytes"
	reasonUserShare  = "user_share"
)

// refused counts n events of shard s that did not fit, logging at most once a minute: a
// full queue refuses on every append.
func (q *Queue) refused(s int, reason string, n int64) {
	if reason == reasonUserShare {
		q.stats.userShare.Add(n)
	} else {
		q.stats.queueBytes.Add(n)
	}
	now := time.Now().UnixNano()
	if last := q.refusedLogged.Load(); now-last > int64(time.Minute) && q.refusedLogged.CompareAndSwap(last, now) {
		q.log.Warn("event queue full: refusing new events", "shard", s, "reason", reason,
			"refused_user_share", q.stats.userShare.Load(), "refused_queue_bytes", q.stats.queueBytes.Load())
	}
}

// queued accounts for n events added to shard s and wakes the shard's sender if it runs here.
func (q *Queue) queued(s int, n int64) {
	q.stats.queued.Add(n)
	select {
	case q.wake[s] <- struct{}{}:
	default:
	}
}

// Backlog returns how many events wait in the queue, all shards and nodes together (a gauge
// for metrics; it costs one pipelined XLEN per shard).
func (q *Queue) Backlog(ctx context.Context) (int64, error) {
	cmds := make([]*redis.IntCmd, q.cfg.Shards)
	_, err := q.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for s := range cmds {
			cmds[s] = p.XLen(ctx, q.keys.stream(s))
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("%w: backlog: %w", ErrUnavailable, err)
	}
	var n int64
	for _, c := range cmds {
		n += c.Val()
	}
	return n, nil
}

// Bytes returns what the queued events cost, all shards together, as the byte budget
// counts them (a gauge for metrics and tests; one pipelined GET per shard).
func (q *Queue) Bytes(ctx context.Context) (int64, error) {
	cmds := make([]*redis.StringCmd, q.cfg.Shards)
	_, err := q.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for s := range cmds {
			cmds[s] = p.Get(ctx, q.keys.bytes(s))
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return 0, fmt.Errorf("%w: queued bytes: %w", ErrUnavailable, err)
	}
	var n int64
	for _, c := range cmds {
		v, _ := c.Int64() // redis.Nil: nothing queued
		n += v
	}
	return n, nil
}

// Presence returns the queue's presence counter, which shares its keys and its streams.
func (q *Queue) Presence() *Presence { return &q.presence }

// Node returns this node's id.
func (q *Queue) Node() string { return q.cfg.Node }
