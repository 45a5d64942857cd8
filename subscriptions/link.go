package subscriptions

import (
	"context"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// link is one Pub/Sub connection of the node and the user channels it carries. On a single
// Redis the node has one link for every channel. On Redis Cluster it has one sharded link
// per bucket in use: go-redis pins a cluster PubSub to the node of its first channel's slot
// and loses a multi-slot PubSub on reconnect (LIBS.md B7), and a bucket is one slot.
//
// One goroutine reads the link and a flusher writes its subscription changes; their state
// is guarded by Hub.mu.
type link struct {
	hub      *Hub
	bucket   int    // -1 for the single-Redis link
	sentinel string // the node channel of this link

	channels    map[string]*channel
	ps          *redis.PubSub // nil while there is none
	started     time.Time     // when ps was created, for the watchdog
	connected   bool          // the sentinel is confirmed on ps
	dirty       []*channel    // channels whose wanted state changed since the last flush
	unconfirmed int           // confirmations due for the last flush; none is written before

	flush    chan struct{}
	lastRecv atomic.Int64 // unix nanos of the last thing read from ps
}

func (h *Hub) newLink(bucket int) *link {
	return &link{
		hub:      h,
		bucket:   bucket,
		sentinel: h.keys.nodeChannel(h.cfg.Node, bucket),
		channels: make(map[string]*channel),
		flush:    make(chan struct{}, 1),
	}
}

// run reads and flushes the link until ctx ends.
func (l *link) run(ctx context.Context) {
	go l.flushLoop(ctx)
	l.readLoop(ctx)
}

// readLoop owns the Pub/Sub connection: it builds one, reads everything from it, and builds
// a new one whenever it fails. Dispatch only queues, so it never waits on a client.
func (l *link) readLoop(ctx context.Context) {
	h := l.hub
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		ps, err := l.connect(ctx)
		if err != nil {
			h.log.Warn("pubsub connect failed", "bucket", l.bucket, "err", err, "retry_in", backoff)
			h.reloadSlots(ctx)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 2*time.Second)
			continue
		}
		for {
			m, err := ps.Receive(ctx)
			if err != nil {
				if ctx.Err() == nil {
					h.log.Warn("pubsub connection lost; rebuilding it", "bucket", l.bucket, "err", err)
				}
				h.reloadSlots(ctx)
				break
			}
			l.lastRecv.Store(time.Now().UnixNano())
			switch m := m.(type) {
			case *redis.Message:
				l.dispatch(m)
			case *redis.Subscription:
				if l.confirm(ps, m) {
					backoff = 50 * time.Millisecond
				}
			}
		}
		l.disconnect(ps)
	}
}

// connect builds a new Pub/Sub connection and subscribes the sentinel on it. Every user
// channel of the link is subscribed again, and its connections caught up, once that is
// confirmed.
func (l *link) connect(ctx context.Context) (*redis.PubSub, error) {
	h := l.hub
	var ps *redis.PubSub
	if c, ok := h.rdb.(*redis.ClusterClient); ok {
		ps = c.SSubscribe(ctx)
	} else {
		ps = h.rdb.Subscribe(ctx)
	}
	h.mu.Lock()
	if !l.started.IsZero() {
		h.reconnects.Add(1)
	}
	l.ps, l.started, l.connected, l.unconfirmed = ps, time.Now(), false, 0
	for _, c := range l.channels {
		c.inflight, c.subscribed = 0, false
		if c.ready {
			c.ready, c.readyCh = false, make(chan struct{})
			c.needCatchup = true
		}
	}
	h.mu.Unlock()
	if err := h.subscribeCmd(ctx, ps, true, l.sentinel); err != nil {
		l.disconnect(ps)
		return nil, err
	}
	return ps, nil
}

// disconnect forgets ps and closes it.
func (l *link) disconnect(ps *redis.PubSub) {
	h := l.hub
	h.mu.Lock()
	if l.ps == ps {
		l.ps, l.connected = nil, false
	}
	h.mu.Unlock()
	_ = ps.Close()
}

// confirm handles a subscribe or unsubscribe confirmation. It reports whether it was the
// sentinel's, which means the connection is up.
func (l *link) confirm(ps *redis.PubSub, m *redis.Subscription) bool {
	h := l.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	if l.ps != ps {
		return false
	}
	subscribe := m.Kind == "subscribe" || m.Kind == "ssubscribe"
	if m.Channel == l.sentinel {
		switch {
		case !subscribe:
			// Redis Cluster unsubscribed us: the slot moved. Only a new connection can
			// subscribe again (LIBS.md B7).
			h.log.Warn("pubsub sentinel unsubscribed by Redis (slot moved?); rebuilding", "bucket", l.bucket)
			go ps.Close()
		case l.connected:
			// go-redis reconnected by itself inside a call and resubscribed; what was
			// published meanwhile is missing, so rebuild and catch everyone up.
			h.log.Warn("pubsub connection was re-established underneath; rebuilding it", "bucket", l.bucket)
			go ps.Close()
		default:
			l.connected = true
			for _, c := range l.channels {
				l.markDirty(c)
			}
			l.wakeFlusher()
			return true
		}
		return false
	}
	if l.unconfirmed > 0 {
		if l.unconfirmed--; l.unconfirmed == 0 && len(l.dirty) > 0 {
			l.wakeFlusher()
		}
	}
	c := l.channels[m.Channel]
	if c == nil {
		return false
	}
	if c.inflight == 0 {
		if !subscribe && c.subscribed {
			// An unsubscribe we did not ask for: the slot moved or the shard failed over.
			h.log.Warn("pubsub channel unsubscribed by Redis; rebuilding", "bucket", l.bucket)
			go ps.Close()
		}
		return false
	}
	c.inflight--
	if c.inflight > 0 {
		return false // a later command on this channel decides its state
	}
	switch {
	case c.subscribed && subscribe:
		if !c.ready {
			c.ready = true
			close(c.readyCh)
		}
		if c.needCatchup {
			c.needCatchup = false
			for _, s := range c.subs {
				s.requestCatchup()
			}
		}
	case !c.subscribed && len(c.subs) == 0:
		delete(l.channels, c.name)
	}
	return false
}

// dispatch hands a published message to the local subscriptions of its channel.
func (l *link) dispatch(m *redis.Message) {
	msg, ok := decodeMessage(m.Payload)
	if !ok {
		if strings.HasPrefix(m.Payload, controlPrefix) {
			l.control(m)
		}
		return
	}
	h := l.hub
	h.obs.ObserveDispatch(time.Duration(time.Now().UnixMilli()+h.clockOffset.Load()-int64(msg.ID.MS)) * time.Millisecond)
	h.mu.RLock()
	if c := l.channels[m.Channel]; c != nil {
		for _, s := range c.subs {
			s.offer(msg)
		}
	}
	h.mu.RUnlock()
}

// markDirty queues c for the flusher; Hub.mu must be held.
func (l *link) markDirty(c *channel) {
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
		h.mu.Lock()
		ps := l.ps
		if ps == nil || !l.connected || l.unconfirmed > 0 {
			// A new connection re-queues every channel; a confirmation wakes us.
			h.mu.Unlock()
			continue
		}
		var subs, unsubs []string
		for _, c := range l.dirty {
			c.queued = false
			want := len(c.subs) > 0
			switch {
			case want && !c.subscribed:
				c.subscribed = true
				c.inflight++
				subs = append(subs, c.name)
			case !want && c.subscribed:
				c.subscribed = false
				c.inflight++
				c.ready, c.readyCh = false, make(chan struct{})
				unsubs = append(unsubs, c.name)
			case !want && c.inflight == 0:
				delete(l.channels, c.name)
			}
		}
		clear(l.dirty)
		l.dirty = l.dirty[:0]
		l.unconfirmed = len(subs) + len(unsubs)
		h.mu.Unlock()

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

// checkQuiet closes the link's connection when it has been silent for three heartbeats, and
// otherwise pings through it. A frozen or black-holed Redis is not noticed by go-redis
// (LIBS.md B4); the reader then builds a new connection.
func (l *link) checkQuiet(ctx context.Context) {
	h := l.hub
	h.mu.RLock()
	ps, started := l.ps, l.started
	h.mu.RUnlock()
	if ps == nil {
		return
	}
	last := time.Unix(0, l.lastRecv.Load())
	if started.After(last) {
		last = started
	}
	if quiet := time.Since(last); quiet > 3*h.cfg.Heartbeat {
		h.log.Warn("pubsub connection quiet; rebuilding it", "bucket", l.bucket, "quiet_for", quiet.Round(time.Millisecond))
		h.reloadSlots(ctx)
		_ = ps.Close()
		return
	}
	if err := ps.Ping(ctx); err != nil && ctx.Err() == nil {
		_ = ps.Close()
	}
}

// reloadSlots refreshes a cluster client's slot map: a link is rebuilt on the master the
// client believes owns its slot, and after a move or failover that belief is stale.
func (h *Hub) reloadSlots(ctx context.Context) {
	if c, ok := h.rdb.(*redis.ClusterClient); ok {
		c.ReloadState(ctx)
	}
}

// healthy reports whether the link's connection is up and answered recently; mu held.
func (l *link) healthy() bool {
	return l.connected && time.Since(time.Unix(0, l.lastRecv.Load())) <= 3*l.hub.cfg.Heartbeat
}
