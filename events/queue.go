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

// MaxBatch is the largest number of events in one webhook request, per the contract.
const MaxBatch = 100

// Defaults of the byte budget's settings, for flags to show (see Config).
const (
	DefaultMaxBytes      = 256 << 20
	DefaultMaxUserBytes  = 1 << 20
	DefaultSystemReserve = 0.25
)

// Config configures a Queue. Zero values mean the defaults named on each field. Every node
// of a deployment must use the same Prefix and Shards: they are the key layout.
type Config struct {
	// URL is the webhook events are POSTed to. Empty means no backend: Emit validates and
	// discards events and Run only waits, while presence is still counted (Online works).
	URL string
	// Secret is the HMAC-SHA256 key of HeaderSignature. Empty sends requests unsigned.
	Secret string
	// Node is this node's id (the id pattern): the "node" of its events and its consumer
	// name in the group. Default "node".
	Node string
	// Prefix starts every Redis key. Default "sb".
	Prefix string
	// Shards is the number of event streams, each on its own Redis Cluster slot. A user's
	// events and presence live in shard fnv32a(user) mod Shards. Default 16. Changing it
	// orphans queued events and presence counts: stop every node first.
	Shards int
	// MaxBytes bounds the queue in bytes: what its undelivered events take of Redis's
	// memory, each charged its JSON and user id, 128 bytes of bookkeeping and, above 4 KB,
	// the allocator's rounding (lib.lua), split evenly over the shards (MaxBytes/Shards
	// each). An event that does not fit is refused with ErrQueueFull and counted, never
	// queued by trimming older ones. Default 256 MiB: the
	// entry bound it replaces (1,000,000 events) times 256 bytes, what a presence event or a
	// small client event costs, so ordinary traffic keeps today's capacity while a flood of
	// large events can no longer grow Redis past it.
	MaxBytes int64
	// MaxUserBytes is one user's share of its shard: a client event that would take the
	// bytes its user has queued past it is refused (ErrQueueFull, counted as user_share), so
	// one user's flood cannot use up the queue for others. Server events (presence, rooms)
	// count towards it but are never refused for it. Capped at the client part of a shard
	// (see SystemReserve). Default 1 MiB: about 4,000 small client events, or 120 of 8 KB,
	// waiting for the webhook.
	MaxUserBytes int64
	// SystemReserve is the fraction of each shard's budget only server events (user.online,
	// user.offline, room.joined, room.left) may use: client events are refused once a shard
	// holds (1-SystemReserve)*MaxBytes/Shards bytes, so however many users flood, the
	// server's own events still fit. Values outside (0, 1) mean the default, 0.25.
	SystemReserve float64
	// MaxAge is how long an undelivered event is retried before it is dropped and counted
	// in Stats.DroppedExpired. Default 24h.
	MaxAge time.Duration
	// BatchSize is the most events per request, at most MaxBatch. Default MaxBatch.
	BatchSize int
	// MaxBatchBytes caps a request's body; a single larger event is still sent alone.
	// Default 1 MiB, under common serverless payload limits.
	MaxBatchBytes int
	// Timeout bounds one request, answer and body included; no answer in time is a failure.
	// Default 10s.
	Timeout time.Duration
	// RetryMin is the wait after a first failed request; each further failure of the same
	// batch doubles it, with jitter (a random [d/2, d]), up to RetryMax. Default 500ms.
	RetryMin time.Duration
	// RetryMax caps the wait between attempts, so a webhook that comes back is used again
	// within about RetryMax. Default 30s.
	RetryMax time.Duration
	// PollInterval is how often an idle shard is read for events queued on other nodes
	// (events queued on this node wake its sender at once). Default 200ms.
	PollInterval time.Duration
	// ClaimIdle is how long a shard's lease lives without renewal (it is renewed every
	// ClaimIdle/3), and how long an event may stay pending on a consumer that does not hold
	// the lease before it is claimed: after a node dies, its shards and pending events move
	// to another node within about ClaimIdle. Default 30s.
	ClaimIdle time.Duration
	// Client sends the requests, for a custom transport (proxy, TLS). Its CheckRedirect is
	// replaced (a 3xx is a failure, never followed) and its Timeout by Timeout. Default: a
	// client of its own.
	Client *http.Client
	// Logger receives the queue's logs. Default slog.Default().
	Logger *slog.Logger
	// OnAttempt, if set, is called after every webhook request, from the sender's
	// goroutines, for metrics such as a latency or lag histogram. It must not block.
	OnAttempt func(Attempt)
}

func (c *Config) setDefaults() {
	if c.Node == "" {
		c.Node = "node"
	}
	if c.Prefix == "" {
		c.Prefix = "sb"
	}
	if c.Shards <= 0 {
		c.Shards = 16
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.MaxUserBytes <= 0 {
		c.MaxUserBytes = DefaultMaxUserBytes
	}
	if c.SystemReserve <= 0 || c.SystemReserve >= 1 {
		c.SystemReserve = DefaultSystemReserve
	}
	if c.MaxAge <= 0 {
		c.MaxAge = 24 * time.Hour
	}
	if c.BatchSize <= 0 || c.BatchSize > MaxBatch {
		c.BatchSize = MaxBatch
	}
	if c.MaxBatchBytes <= 0 {
		c.MaxBatchBytes = 1 << 20
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
	if c.RetryMin <= 0 {
		c.RetryMin = 500 * time.Millisecond
	}
	if c.RetryMax <= 0 {
		c.RetryMax = 30 * time.Second
	}
	if c.RetryMax < c.RetryMin {
		c.RetryMax = c.RetryMin
	}
	if c.PollInterval <= 0 {
		c.PollInterval = 200 * time.Millisecond
	}
	if c.ClaimIdle <= 0 {
		c.ClaimIdle = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

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
