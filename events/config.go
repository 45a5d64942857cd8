package events

import (
	"log/slog"
	"net/http"
	"time"
)

// MaxBatch is the largest number of events in one webhook request, as docs/protocol.md documents.
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
