package subscriptions

import (
	"context"
	_ "embed"
	"sort"

	"github.com/redis/go-redis/v9"
)

//go:embed batch.lua
var batchLua string

// batchScript delivers many different messages in one call (POST /v1/messages).
var batchScript = redis.NewScript(batchLua)

// Publish delivers env to user: the message is appended to the user's stream and published on
// the user's channel in one atomic step, so it reaches every connection of the user on every
// node, and a client that was away finds it when it resumes. It returns the message id.
// An error wrapping ErrUnavailable means Redis did not take the message.
func (h *Hub) Publish(ctx context.Context, user string, env Envelope) (StreamID, error) {
	if !ValidID(user) || (env.From != "" && !ValidID(env.From)) || (env.Room != "" && !ValidID(env.Room)) {
		return StreamID{}, ErrInvalidID
	}
	if err := ctx.Err(); err != nil {
		return StreamID{}, err
	}
	id, err := h.pub.publish(h.keys.userStream(user), h.keys.userChannel(user), h.groupKey(user), env.tail())
	if err != nil {
		return StreamID{}, err
	}
	return ParseStreamID(id)
}

// ChannelStats describes one user channel this node is subscribed to.
type ChannelStats struct {
	User        string `json:"user"`
	Channel     string `json:"channel"`
	Connections int    `json:"connections"`
}

// Stats is a snapshot of the node's subscriptions.
type Stats struct {
	Node        string         `json:"node"`
	Channels    []ChannelStats `json:"channels"`
	Connections int            `json:"connections"`
	Users       int            `json:"users"`
	// PubSubReconnects counts Pub/Sub connections built after the first one.
	PubSubReconnects int64 `json:"pubsub_reconnects"`
	// CaughtUp counts messages delivered from streams after a reconnect.
	CaughtUp int64 `json:"caught_up"`
	// Replayed counts messages replayed to connections that resumed with since.
	Replayed int64 `json:"replayed"`
}

// LocalConnections returns how many of user's connections this node holds.
func (h *Hub) LocalConnections(user string) int {
	return h.localConnections(user)
}

// Stats returns the node's current subscriptions, sorted by user.
func (h *Hub) Stats() Stats {
	st := Stats{Node: h.cfg.Node}
	st.Channels, st.Connections = h.channelStats()
	st.Users = len(st.Channels)
	st.PubSubReconnects, st.CaughtUp, st.Replayed = h.reconnects.Load(), h.caughtUp.Load(), h.replayed.Load()
	sort.Slice(st.Channels, func(i, j int) bool { return st.Channels[i].User < st.Channels[j].User })
	return st
}

// Direct is one direct message of a batch.
type Direct struct {
	User     string
	Envelope Envelope
}

// PublishMany delivers a batch of direct messages in few round trips: one script call
// delivers up to 64 of them (on Redis Cluster, 64 of one bucket), and the calls go out in
// pipelines, one after the other. It returns one id or one error per message, in order;
// messages to one user are stored in batch order.
func (h *Hub) PublishMany(ctx context.Context, msgs []Direct) ([]StreamID, []error) {
	ids := make([]StreamID, len(msgs))
	errs := make([]error, len(msgs))
	ds := make([]*delivery, len(msgs))
	var live []*delivery
	for i, m := range msgs {
		if !ValidID(m.User) || (m.Envelope.From != "" && !ValidID(m.Envelope.From)) || (m.Envelope.Room != "" && !ValidID(m.Envelope.Room)) {
			errs[i] = ErrInvalidID
			continue
		}
		ds[i] = &delivery{stream: h.keys.userStream(m.User), channel: h.keys.userChannel(m.User),
			bucket: h.groupKey(m.User), tail: m.Envelope.tail(), done: make(chan struct{}, 1)}
		live = append(live, ds[i])
	}
	if err := ctx.Err(); err != nil {
		for i := range errs {
			errs[i] = err
		}
		return ids, errs
	}
	// Its own pipelines, one after the other, rather than the shared queue: the shared
	// workers run in parallel and would not keep a user's messages in batch order.
	for start := 0; start < len(live); start += maxPipeline {
		h.pub.exec(ctx, live[start:min(start+maxPipeline, len(live))])
	}
	for i, d := range ds {
		if d == nil {
			continue
		}
		<-d.done
		if d.err != nil {
			errs[i] = d.err
			continue
		}
		ids[i], errs[i] = ParseStreamID(d.id)
	}
	return ids, errs
}

func allSameKey[T any](items []T, key func(T) int) bool {
	k := key(items[0])
	for _, it := range items[1:] {
		if key(it) != k {
			return false
		}
	}
	return true
}

// groupKey is what deliveries to user are grouped by into one script call: its bucket on
// Redis Cluster, where a call must stay in one slot; anything on a single Redis.
func (h *Hub) groupKey(user string) int {
	if h.cluster {
		return bucketOf(user)
	}
	return 0
}

// groupBy splits items into groups of at most size with the same key, keeping their order
// within a key.
func groupBy[T any](items []T, size int, key func(T) int) [][]T {
	var groups [][]T
	if len(items) > 0 && allSameKey(items, key) {
		// The common case, and always on a single Redis: chunks of items itself, no copies.
		for start := 0; start < len(items); start += size {
			groups = append(groups, items[start:min(start+size, len(items))])
		}
		return groups
	}
	byKey := map[int][]T{}
	var order []int
	for _, it := range items {
		k := key(it)
		if _, ok := byKey[k]; !ok {
			order = append(order, k)
		}
		byKey[k] = append(byKey[k], it)
	}
	for _, k := range order {
		its := byKey[k]
		for start := 0; start < len(its); start += size {
			groups = append(groups, its[start:min(start+size, len(its))])
		}
	}
	return groups
}
