package subscriptions

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// connState is where a link's Pub/Sub connection stands.
type connState uint8

const (
	connDown    connState = iota // no connection; the reader is building one or waiting to
	connDialing                  // a connection is set up and its sentinel not yet confirmed
	connUp                       // the sentinel is confirmed: channel commands may be written
	connClosed                   // the hub is stopping: the link takes no new connection
)

// link is one Pub/Sub connection of the node and the user channels it carries. On a single
// Redis the node has one link for every channel. On Redis Cluster it has one sharded link
// per bucket in use: go-redis pins a cluster PubSub to the node of its first channel's slot
// and loses a multi-slot PubSub on reconnect (docs/design.md, "a cluster PubSub holds one slot"), and a bucket is one slot.
//
// One goroutine reads the link (readLoop, which also dispatches) and a flusher writes its
// subscription changes; both are started and joined by run.
type link struct {
	hub      *Hub
	bucket   int    // -1 for the single-Redis link
	sentinel string // the node channel of this link

	// mu guards the fields below it and the state of every channel in channels. It is
	// never held while calling a Subscription or a Sink, or while waiting on Redis.
	mu          sync.Mutex
	state       connState
	ps          *redis.PubSub // nil while there is none
	started     time.Time     // when ps was created, for the watchdog
	channels    map[string]*channel
	dirty       []*channel // channels whose wanted state changed since the last flush
	unconfirmed int        // confirmations due for the last flush; none is written before

	offering []*Subscription // dispatch's copy of a channel's subscribers; reader only
	roomOffs []*roomSub      // and of a room channel's roomSubs
	tasks    sync.WaitGroup  // the flusher and control replies, joined by run
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

// run reads and flushes the link until ctx ends, and returns once everything it started
// has returned.
func (l *link) run(ctx context.Context) {
	l.tasks.Go(func() { l.flushLoop(ctx) })
	l.readLoop(ctx)
	l.tasks.Wait()
}

// close stops the link taking new connections and closes the one it has, which releases
// every subscription it carries; the reader then sees the error and returns.
func (l *link) close() {
	l.mu.Lock()
	l.state = connClosed
	ps := l.ps
	l.mu.Unlock()
	if ps != nil {
		_ = ps.Close()
	}
}

// readLoop owns the Pub/Sub connection: it builds one, reads everything from it, and builds
// a new one whenever it fails. Dispatch only queues, so it never waits on a client.
func (l *link) readLoop(ctx context.Context) {
	h := l.hub
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		ps, err := l.connect(ctx)
		if err != nil {
			if l.isClosed() {
				return
			}
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
		if l.receive(ctx, ps) {
			backoff = 50 * time.Millisecond
		}
		l.disconnect(ps)
	}
}

// receive reads ps until it fails. It reports whether the connection came up (its sentinel
// was confirmed).
func (l *link) receive(ctx context.Context, ps *redis.PubSub) (up bool) {
	h := l.hub
	for {
		m, err := ps.Receive(ctx)
		if err != nil {
			if ctx.Err() == nil && !l.isClosed() {
				h.log.Warn("pubsub connection lost; rebuilding it", "bucket", l.bucket, "err", err)
			}
			h.reloadSlots(ctx)
			return up
		}
		l.lastRecv.Store(time.Now().UnixNano())
		switch m := m.(type) {
		case *redis.Message:
			if !l.dispatch(m) && !l.dispatchEphemeral(m) && strings.HasPrefix(m.Payload, controlPrefix) {
				l.control(ctx, m)
			}
		case *redis.Subscription:
			c := l.confirm(ps, m)
			up = up || c.up
			for _, s := range c.catchup {
				s.requestCatchup()
			}
			if len(c.catchup) > 0 && h.bigRoomsOn() {
				subs := c.catchup
				l.tasks.Go(func() { h.resyncRooms(ctx, subs) })
			}
			for _, rs := range c.rooms {
				rs.channelLive()
			}
			if c.rebuild {
				// The next Receive fails, and the loop builds a new connection.
				_ = ps.Close()
			}
		}
	}
}

func (l *link) isClosed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.state == connClosed
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
	if !l.adopt(ps) {
		_ = ps.Close()
		return nil, ErrClosed
	}
	if err := h.subscribeCmd(ctx, ps, true, l.sentinel); err != nil {
		l.disconnect(ps)
		return nil, err
	}
	return ps, nil
}

// adopt makes ps the link's connection, on which no channel is subscribed yet; it reports
// false when the link is closed.
func (l *link) adopt(ps *redis.PubSub) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.state == connClosed {
		return false
	}
	if !l.started.IsZero() {
		l.hub.reconnects.Add(1)
	}
	l.ps, l.started, l.state, l.unconfirmed = ps, time.Now(), connDialing, 0
	for _, c := range l.channels {
		c.apply(evConnLost)
	}
	return true
}

// disconnect forgets ps and closes it.
func (l *link) disconnect(ps *redis.PubSub) {
	l.mu.Lock()
	if l.ps == ps {
		l.ps = nil
		if l.state != connClosed {
			l.state = connDown
		}
	}
	l.mu.Unlock()
	_ = ps.Close()
}

// dispatch offers a published message to the local subscriptions of its channel. It
// reports false when the payload is not a message (a control message, or garbage).
//
// The subscribers are copied under l.mu and offered after it is released, so that no hub
// lock is held while a Sink runs (a Sink may call back into the hub). Two guarantees hold
// without the link lock:
//
//   - Order. A channel is carried by one link, and a link has one reader goroutine, which
//     is the only caller of dispatch: a user's messages are offered one after the other in
//     the order Redis published them, which is id order (the delivery script appends and
//     publishes in one step). Each offer runs under the Subscription's own lock, which
//     orders it with the subscription's replay and catch-up, and deliverLocked passes
//     nothing that is not newer than the last id delivered.
//   - Nothing after Close. Subscription.Close marks the subscription closed under its lock
//     before detaching it. An offer from a copy taken before the detach takes that lock
//     too: either it ran first and Close waited for it, or it sees the subscription closed
//     and delivers nothing. So no Deliver runs once Close has returned.
func (l *link) dispatch(m *redis.Message) bool {
	msg, ok := decodeMessage(m.Payload)
	if !ok {
		return false
	}
	h := l.hub
	h.obs.ObserveDispatch(time.Duration(time.Now().UnixMilli()+h.clockOffset.Load()-int64(msg.ID.MS)) * time.Millisecond)
	l.mu.Lock()
	if c := l.channels[m.Channel]; c != nil {
		l.offering = append(l.offering[:0], c.subs...)
		l.roomOffs = append(l.roomOffs[:0], c.rsubs...)
	}
	l.mu.Unlock()
	for _, s := range l.offering {
		s.offer(msg)
	}
	for _, rs := range l.roomOffs {
		rs.offer(msg)
	}
	clear(l.offering) // keep no closed subscription reachable
	l.offering = l.offering[:0]
	clear(l.roomOffs)
	l.roomOffs = l.roomOffs[:0]
	return true
}

// subscribers returns a copy of the subscriptions of the channel named name.
func (l *link) subscribers(name string) []*Subscription {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c := l.channels[name]; c != nil {
		return append([]*Subscription(nil), c.subs...)
	}
	return nil
}

// checkQuiet closes the link's connection when it has been silent for three heartbeats, and
// otherwise pings through it. A frozen or black-holed Redis is not noticed by go-redis
// (docs/design.md, "the health check does not notice a frozen Redis"); the reader then builds a new connection.
func (l *link) checkQuiet(ctx context.Context) {
	h := l.hub
	l.mu.Lock()
	ps, started := l.ps, l.started
	l.mu.Unlock()
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

// healthy reports whether the link's connection is up and answered recently.
func (l *link) healthy() bool {
	l.mu.Lock()
	up := l.state == connUp
	l.mu.Unlock()
	return up && time.Since(time.Unix(0, l.lastRecv.Load())) <= 3*l.hub.cfg.Heartbeat
}
