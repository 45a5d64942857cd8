package subscriptions

import (
	"context"
	_ "embed"
	"fmt"
	"sort"
	"time"

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
	id, err := h.pub.publish(h.keys.userStream(user), h.keys.userChannel(user), env.tail())
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
	b := -1
	if h.cluster {
		b = bucketOf(user)
	}
	h.mu.RLock()
	defer h.mu.RUnlock()
	if l := h.links[b]; l != nil {
		if c := l.channels[h.keys.userChannel(user)]; c != nil {
			return len(c.subs)
		}
	}
	return 0
}

// Stats returns the node's current subscriptions, sorted by user.
func (h *Hub) Stats() Stats {
	st := Stats{Node: h.cfg.Node, Channels: []ChannelStats{}}
	h.mu.RLock()
	for _, l := range h.links {
		for _, c := range l.channels {
			if len(c.subs) > 0 {
				st.Channels = append(st.Channels, ChannelStats{User: c.user, Channel: c.name, Connections: len(c.subs)})
			}
		}
	}
	st.Connections = h.conns
	h.mu.RUnlock()
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
	var valid []int
	for i, m := range msgs {
		if !ValidID(m.User) || (m.Envelope.From != "" && !ValidID(m.Envelope.From)) || (m.Envelope.Room != "" && !ValidID(m.Envelope.Room)) {
			errs[i] = ErrInvalidID
			continue
		}
		valid = append(valid, i)
	}
	if err := ctx.Err(); err != nil {
		for i := range errs {
			errs[i] = err
		}
		return ids, errs
	}
	groups := groupBy(valid, fanoutGroup, func(i int) int {
		if h.cluster {
			return bucketOf(msgs[i].User)
		}
		return 0
	})
	for start := 0; start < len(groups); start += fanoutPipeline {
		chunk := groups[start:min(start+fanoutPipeline, len(groups))]
		h.deliverBatch(ctx, msgs, chunk, ids, errs)
	}
	return ids, errs
}

// groupBy splits items into groups of at most size with the same key, keeping their order
// within a key.
func groupBy[T any](items []T, size int, key func(T) int) [][]T {
	byKey := map[int][]T{}
	var order []int
	for _, it := range items {
		k := key(it)
		if _, ok := byKey[k]; !ok {
			order = append(order, k)
		}
		byKey[k] = append(byKey[k], it)
	}
	var groups [][]T
	for _, k := range order {
		its := byKey[k]
		for start := 0; start < len(its); start += size {
			groups = append(groups, its[start:min(start+size, len(its))])
		}
	}
	return groups
}

// deliverBatch runs the batch script once per group, in one pipeline, and records each
// message's id or error.
func (h *Hub) deliverBatch(ctx context.Context, msgs []Direct, groups [][]int, ids []StreamID, errs []error) {
	todo := groups
	for attempt := 0; ; attempt++ {
		pipe := h.rdb.Pipeline()
		cmds := make([]*redis.Cmd, len(todo))
		deadline := h.pub.deadline()
		for g, group := range todo {
			keys := make([]string, 0, 2*len(group))
			args := make([]any, 0, 4+len(group))
			args = append(args, h.pub.historySize, h.pub.historyTTL, h.pub.publishCmd, deadline)
			for _, i := range group {
				u := msgs[i].User
				keys = append(keys, h.keys.userStream(u), h.keys.userChannel(u))
				args = append(args, msgs[i].Envelope.tail())
			}
			cmds[g] = pipe.EvalSha(ctx, batchScript.Hash(), keys, args...)
		}
		start := time.Now()
		_, err := pipe.Exec(ctx)
		h.obs.ObservePublish(time.Since(start), len(todo), err)
		var again [][]int
		for g, cmd := range cmds {
			res, err := cmd.Slice()
			if err != nil && attempt == 0 && isNoScript(err) {
				again = append(again, todo[g]) // did not run: safe to run again
				continue
			}
			for k, i := range todo[g] {
				if err != nil {
					errs[i] = fmt.Errorf("%w: %w", ErrUnavailable, err)
					continue
				}
				id, _ := res[k].(string)
				ids[i], errs[i] = ParseStreamID(id)
			}
		}
		if len(again) == 0 {
			return
		}
		if err := batchScript.Load(ctx, h.rdb).Err(); err != nil {
			for _, g := range again {
				for _, i := range g {
					errs[i] = fmt.Errorf("%w: load batch script: %w", ErrUnavailable, err)
				}
			}
			return
		}
		todo = again
	}
}
