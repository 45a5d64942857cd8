package events

import (
	"sync/atomic"
	"time"
)

// Stats is a snapshot of one node's event counters, for metrics: counters only grow, so a
// deployment's totals are the sums over its nodes.
type Stats struct {
	// Queued counts events this node added to the queue (Emit and presence changes).
	Queued int64
	// Sent counts events the webhook acknowledged with a 2xx in a request from this node.
	Sent int64
	// Retried counts failed requests (non-2xx, no answer in Timeout, connection errors),
	// each of which is retried later.
	Retried int64
	// DroppedExpired counts events dropped unsent because they were older than MaxAge.
	DroppedExpired int64
	// DroppedQueueBytes counts events this node did not queue because the byte budget was
	// used up (MaxBytes; for client events, the part not reserved for server events). A
	// client's event is refused to it (ErrQueueFull); a server event is lost, and counted.
	DroppedQueueBytes int64
	// DroppedUserShare counts client events this node refused because their user's queued
	// bytes would have passed MaxUserBytes.
	DroppedUserShare int64
	// DroppedMalformed counts stream entries without an event, written by something else.
	DroppedMalformed int64
	// Claimed counts events this node took over from another consumer: a dead or departed
	// node's pending events, or its own from an earlier process with the same node id.
	Claimed int64
	// Lag is the age of the oldest event of the last acknowledged request.
	Lag time.Duration
	// Shards is how many shards this node sends now.
	Shards int
}

// Dropped is every event dropped unsent: what docs/protocol.md ("Backend events") says
// /metrics counts.
func (s Stats) Dropped() int64 {
	return s.DroppedExpired + s.DroppedMalformed + s.DroppedQueueBytes + s.DroppedUserShare
}

// Attempt describes one webhook request, for Config.OnAttempt.
type Attempt struct {
	// Shard is the stream the events came from.
	Shard int
	// Events is how many events the request carried.
	Events int
	// Status is the HTTP status, 0 when there was no answer.
	Status int
	// Err is nil when the webhook acknowledged the request (2xx), else why it failed.
	Err error
	// Duration is how long the request took.
	Duration time.Duration
	// Lag is the age of the request's oldest event when it was sent.
	Lag time.Duration
}

type counters struct {
	queued, sent, retried, expired, malformed, claimed atomic.Int64
	queueBytes, userShare                              atomic.Int64
	lag                                                atomic.Int64 // nanoseconds
	shards                                             atomic.Int64
}

// Stats returns a snapshot of this node's counters.
func (q *Queue) Stats() Stats {
	c := &q.stats
	return Stats{
		Queued:            c.queued.Load(),
		Sent:              c.sent.Load(),
		Retried:           c.retried.Load(),
		DroppedExpired:    c.expired.Load(),
		DroppedQueueBytes: c.queueBytes.Load(),
		DroppedUserShare:  c.userShare.Load(),
		DroppedMalformed:  c.malformed.Load(),
		Claimed:           c.claimed.Load(),
		Lag:               time.Duration(c.lag.Load()),
		Shards:            int(c.shards.Load()),
	}
}
