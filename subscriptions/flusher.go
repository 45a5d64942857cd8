package subscriptions

import (
	"context"

	"github.com/redis/go-redis/v9"
)

// This file holds how a link's channels are subscribed: the flusher writes SUBSCRIBE and
// UNSUBSCRIBE for the channels whose wanted state changed, and the reader applies Redis's
// confirmations (see chanState for the transitions).

// confirmation is what the reader must do, outside l.mu, about a confirmation.
type confirmation struct {
	up      bool            // the sentinel was confirmed: the connection is up
	rebuild bool            // Redis acted on its own: close the connection and build a new one
	catchup []*Subscription // subscribers of a recovered channel, to catch up from their streams
	rooms   []*roomSub      // roomSubs of a room channel confirmed: they start or catch up
}

// confirm applies a subscribe or unsubscribe confirmation read from ps.
func (l *link) confirm(ps *redis.PubSub, m *redis.Subscription) confirmation {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ps != ps {
		return confirmation{} // from a connection replaced since
	}
	subscribe := m.Kind == "subscribe" || m.Kind == "ssubscribe"
	if m.Channel == l.sentinel {
		return l.confirmSentinelLocked(subscribe)
	}
	if l.unconfirmed > 0 {
		l.unconfirmed--
	}
	c := l.channels[m.Channel]
	var out confirmation
	if c != nil {
		out = l.confirmChannelLocked(c, subscribe)
	}
	if l.unconfirmed == 0 && len(l.dirty) > 0 {
		l.wakeFlusher()
	}
	return out
}

func (l *link) confirmSentinelLocked(subscribe bool) confirmation {
	h := l.hub
	switch {
	case l.state == connClosed:
		return confirmation{} // the hub is stopping; the connection is being closed
	case !subscribe:
		// Redis Cluster unsubscribed us: the slot moved. Only a new connection can
		// subscribe again (docs/design.md, "a cluster PubSub holds one slot").
		h.log.Warn("pubsub sentinel unsubscribed by Redis (slot moved?); rebuilding", "bucket", l.bucket)
		return confirmation{rebuild: true}
	case l.state == connUp:
		// go-redis reconnected by itself inside a call and resubscribed; what was
		// published meanwhile is missing, so rebuild and catch everyone up.
		h.log.Warn("pubsub connection was re-established underneath; rebuilding it", "bucket", l.bucket)
		return confirmation{rebuild: true}
	}
	l.state = connUp
	for _, c := range l.channels {
		l.markDirtyLocked(c)
	}
	l.wakeFlusher()
	return confirmation{up: true}
}

// confirmChannelLocked applies a confirmation of c's channel.
func (l *link) confirmChannelLocked(c *channel, subscribe bool) confirmation {
	if !c.state.inFlight() {
		if !subscribe && c.state == chanLive {
			// An unsubscribe we did not ask for: the slot moved or the shard failed over.
			l.hub.log.Warn("pubsub channel unsubscribed by Redis; rebuilding", "bucket", l.bucket)
			return confirmation{rebuild: true}
		}
		return confirmation{}
	}
	if subscribe == (c.state == chanUnsubscribing) {
		// Not the confirmation of the command in flight: Redis unsubscribed the channel
		// on its own while we subscribed it. Only a new connection is sure to hold it.
		l.hub.log.Warn("pubsub confirmation does not match the command; rebuilding", "bucket", l.bucket, "state", c.state)
		return confirmation{rebuild: true}
	}
	var out confirmation
	if c.state == chanRecovering {
		// Its subscribers were live when the connection was replaced: what was published
		// meanwhile is only in their streams.
		out.catchup = append(out.catchup, c.subs...)
	}
	if subscribe {
		out.rooms = append(out.rooms, c.rsubs...)
	}
	c.apply(evConfirmed)
	if c.state == chanIdle && len(c.subs) == 0 && len(c.rsubs) == 0 {
		delete(l.channels, c.name)
	}
	return out
}

// markDirtyLocked queues c for the flusher.
func (l *link) markDirtyLocked(c *channel) {
	if !c.queued {
		c.queued = true
		l.dirty = append(l.dirty, c)
	}
}

func (l *link) wakeFlusher() {
	select {
	case l.flush <- struct{}{}:
	default:
	}
}

// flushLoop writes subscription changes to the Pub/Sub connection. Changes that pile up
// while Redis confirms the previous batch go out together, so a connect storm of thousands
// of users costs a few SUBSCRIBE commands, not one each.
func (l *link) flushLoop(ctx context.Context) {
	const chunk = 1024
	h := l.hub
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.flush:
		}
		ps, subs, unsubs := l.planFlush()
		if ps == nil {
			continue
		}
		var err error
		for i := 0; i < len(unsubs) && err == nil; i += chunk {
			err = h.subscribeCmd(ctx, ps, false, unsubs[i:min(i+chunk, len(unsubs))]...)
		}
		for i := 0; i < len(subs) && err == nil; i += chunk {
			err = h.subscribeCmd(ctx, ps, true, subs[i:min(i+chunk, len(subs))]...)
		}
		if err != nil && ctx.Err() == nil {
			// The reader sees the closed connection and builds a new one, which subscribes
			// every wanted channel again.
			h.log.Warn("pubsub write failed; rebuilding the connection", "bucket", l.bucket, "err", err)
			_ = ps.Close()
		}
	}
}

// planFlush decides the commands of the next flush and moves their channels into the
// in-flight states. It returns a nil ps when nothing may be written now: a new connection
// queues every channel again, and the last confirmation due wakes the flusher.
func (l *link) planFlush() (ps *redis.PubSub, subs, unsubs []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ps == nil || l.state != connUp || l.unconfirmed > 0 {
		return nil, nil, nil
	}
	var later []*channel
	for _, c := range l.dirty {
		c.queued = false
		want := len(c.subs) > 0 || len(c.rsubs) > 0
		switch {
		case c.state.inFlight():
			later = append(later, c) // decided once Redis has confirmed what is in flight
		case want && c.apply(evSubscribe):
			subs = append(subs, c.name)
		case !want && c.apply(evUnsubscribe):
			unsubs = append(unsubs, c.name)
		case !want:
			delete(l.channels, c.name) // idle or lost: nothing to undo on Redis
		}
	}
	clear(l.dirty)
	l.dirty = l.dirty[:0]
	for _, c := range later {
		l.markDirtyLocked(c)
	}
	l.unconfirmed = len(subs) + len(unsubs)
	return l.ps, subs, unsubs
}

// subscribeCmd writes SUBSCRIBE (or UNSUBSCRIBE), sharded on Redis Cluster.
func (h *Hub) subscribeCmd(ctx context.Context, ps *redis.PubSub, subscribe bool, channels ...string) error {
	switch {
	case h.cluster && subscribe:
		return ps.SSubscribe(ctx, channels...)
	case h.cluster:
		return ps.SUnsubscribe(ctx, channels...)
	case subscribe:
		return ps.Subscribe(ctx, channels...)
	default:
		return ps.Unsubscribe(ctx, channels...)
	}
}
