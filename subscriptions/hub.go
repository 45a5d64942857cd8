package subscriptions

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Errors callers branch on. The service maps them to HTTP statuses and frame codes.
var (
	// ErrUnavailable means Redis could not be reached or did not answer: nothing was accepted.
	ErrUnavailable = errors.New("redis unavailable")
	// ErrClosed means the hub has stopped.
	ErrClosed = errors.New("hub closed")
	// ErrInvalidID means a user id or room name does not match the id pattern.
	ErrInvalidID = errors.New("invalid id")
	// ErrSlowConsumer is given to a Sink that fell behind and is dropped; its client resumes.
	ErrSlowConsumer = errors.New("slow consumer")
	// ErrLagged is given to a Sink whose catch-up found its position trimmed from the stream:
	// messages were lost to it, and its client must resume to learn so (recovered:false).
	ErrLagged = errors.New("history trimmed past the connection's position")
)

// Config configures a Hub. Zero values mean the defaults named on each field.
type Config struct {
	// Node names this node in logs and admin views. Default "node".
	Node string
	// Prefix starts every Redis key and channel. Default "sb".
	Prefix string
	// HistorySize is how many messages each user's stream keeps. Default 1000.
	HistorySize int64
	// HistoryTTL is how long an idle user stream is kept. Default 24h.
	HistoryTTL time.Duration
	// Heartbeat is how often the node pings through its Pub/Sub connection; a connection that
	// stays quiet for three heartbeats is rebuilt. Default 1s.
	Heartbeat time.Duration
	// MaxPending bounds the live messages buffered for one connection while it catches up
	// from its stream; past it the connection is dropped as a slow consumer. Default 4096.
	MaxPending int
	// Logger receives the hub's logs. Default slog.Default().
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.Node == "" {
		c.Node = "node"
	}
	if c.Prefix == "" {
		c.Prefix = "sb"
	}
	if c.HistorySize <= 0 {
		c.HistorySize = 1000
	}
	if c.HistoryTTL <= 0 {
		c.HistoryTTL = 24 * time.Hour
	}
	if c.Heartbeat <= 0 {
		c.Heartbeat = time.Second
	}
	if c.MaxPending <= 0 {
		c.MaxPending = 4096
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Hub is a node's view of the per-user channels: it owns the node's one shared Pub/Sub
// connection, subscribes a user's channel while the user has a connection here, dispatches
// what arrives to the user's local subscriptions, and delivers messages through the
// append+publish script. Build it with New and run it with Run.
type Hub struct {
	rdb  redis.UniversalClient
	cfg  Config
	keys keys
	log  *slog.Logger
	pub  *publisher

	// mu guards the channel table and the Pub/Sub connection state. Lock order: mu, then a
	// Subscription's mu.
	mu        sync.RWMutex
	channels  map[string]*channel
	ps        *redis.PubSub // current connection; nil while there is none
	psStarted time.Time     // when ps was created, for the watchdog
	connected bool          // the node channel is confirmed on ps
	dirty     []*channel    // channels whose wanted state changed since the last flush
	// unconfirmed counts the confirmations still due for the last flush. The flusher waits
	// for them before writing again, so that under a connect storm each SUBSCRIBE carries
	// everything that queued up during one round trip.
	unconfirmed int
	conns       int // local subscriptions, for stats

	flush    chan struct{} // wakes the flusher
	lastRecv atomic.Int64  // unix nanos of the last thing read from ps
	redisOK  atomic.Bool   // the last PING on the command client succeeded
	// Counters for operators: Pub/Sub connections built after the first, and messages
	// delivered from streams by catch-up after a rebuild.
	reconnects atomic.Int64
	caughtUp   atomic.Int64
	// clockOffset is Redis's clock minus ours, in ms, measured every heartbeat; callTimeout
	// is how long the client waits for an answer. Together they give the delivery script a
	// deadline in Redis's clock.
	clockOffset atomic.Int64
	callTimeout time.Duration
	running     atomic.Bool
	catchups    *catchupQueue
	roomLocks   roomLocks
	done        chan struct{} // closed when Run has returned
	ctx         context.Context
}

// channel is the node's state of one user channel.
type channel struct {
	name, user  string
	subs        []*Subscription
	subscribed  bool          // the last command written for it was SUBSCRIBE
	inflight    int           // commands written and not yet confirmed
	ready       bool          // Redis confirmed the current subscription
	readyCh     chan struct{} // closed when ready turns true
	needCatchup bool          // the Pub/Sub connection was rebuilt since subs went live
	queued      bool          // in Hub.dirty
}

// New builds a hub on a go-redis client. The client must be configured with MaxRetries -1:
// go-redis retries replay the delivery script, and a replayed script stores a message twice.
func New(rdb redis.UniversalClient, cfg Config) (*Hub, error) {
	cfg.setDefaults()
	callTimeout, err := clientTimeout(rdb)
	if err != nil {
		return nil, err
	}
	if !ValidID(cfg.Node) {
		return nil, fmt.Errorf("node id %q: %w", cfg.Node, ErrInvalidID)
	}
	h := &Hub{
		rdb:      rdb,
		cfg:      cfg,
		keys:     keys{prefix: cfg.Prefix},
		log:      cfg.Logger.With("node", cfg.Node),
		channels: make(map[string]*channel),
		flush:    make(chan struct{}, 1),
		done:     make(chan struct{}),
		ctx:      context.Background(),

		callTimeout: callTimeout,
	}
	h.pub = newPublisher(rdb, cfg, "PUBLISH", h.scriptDeadline)
	h.catchups = newCatchupQueue(h)
	return h, nil
}

// clientTimeout checks that the client does not retry and returns how long it waits for an
// answer (its read timeout).
func clientTimeout(rdb redis.UniversalClient) (time.Duration, error) {
	var retries int
	var timeout time.Duration
	switch c := rdb.(type) {
	case *redis.Client:
		retries, timeout = c.Options().MaxRetries, c.Options().ReadTimeout
	case *redis.ClusterClient:
		retries, timeout = c.Options().MaxRetries, c.Options().ReadTimeout
	default:
		return 3 * time.Second, nil
	}
	if retries > 0 { // go-redis stores -1 as 0
		return 0, errors.New("subscriptions: the redis client must have MaxRetries -1 (retries replay the delivery script)")
	}
	if timeout <= 0 {
		timeout = 3 * time.Second // go-redis's default; -1 (no timeout) gets it too
	}
	return timeout, nil
}

// scriptDeadline returns, in Redis's clock, the last moment a delivery sent now may run:
// a little before the client gives up waiting for its answer.
func (h *Hub) scriptDeadline() string {
	margin := min(h.callTimeout/4, 250*time.Millisecond)
	ms := time.Now().Add(h.callTimeout-margin).UnixMilli() + h.clockOffset.Load()
	return strconv.FormatInt(ms, 10)
}

// Node returns this node's id.
func (h *Hub) Node() string { return h.cfg.Node }

// Run runs the hub until ctx ends: the Pub/Sub reader, the subscription flusher, the
// heartbeat watchdog, the catch-up workers and the delivery pipeline. On return every
// subscription of the node is released (the Pub/Sub connection is closed).
func (h *Hub) Run(ctx context.Context) error {
	if !h.running.CompareAndSwap(false, true) {
		return errors.New("subscriptions: Run called twice")
	}
	defer close(h.done)
	if err := deliveryScript.Load(ctx, h.rdb).Err(); err != nil {
		// Not fatal: Redis may come up later, and the publisher loads the script on NOSCRIPT.
		h.log.Warn("loading delivery script", "err", err)
	}
	h.ctx = ctx
	var wg sync.WaitGroup
	pubCtx := context.WithoutCancel(ctx) // queued deliveries finish after ctx ends
	wg.Go(func() { h.pub.run(pubCtx, 4) })
	wg.Go(func() { h.readLoop(ctx) })
	wg.Go(func() { h.flushLoop(ctx) })
	wg.Go(func() { h.watchdog(ctx) })
	wg.Go(func() { h.healthLoop(ctx) })
	wg.Go(func() { h.catchups.run(ctx, 4) })
	<-ctx.Done()
	h.pub.close()
	h.mu.Lock()
	if h.ps != nil {
		_ = h.ps.Close()
	}
	h.mu.Unlock()
	wg.Wait()
	return nil
}

// Ready reports whether the node can serve: Redis answers and the shared Pub/Sub connection
// is up and has answered within three heartbeats.
func (h *Hub) Ready() error {
	if !h.redisOK.Load() {
		return fmt.Errorf("%w: redis does not answer", ErrUnavailable)
	}
	h.mu.RLock()
	connected := h.connected
	h.mu.RUnlock()
	if !connected {
		return fmt.Errorf("%w: pubsub connection is down", ErrUnavailable)
	}
	if time.Since(time.Unix(0, h.lastRecv.Load())) > 3*h.cfg.Heartbeat {
		return fmt.Errorf("%w: pubsub connection is quiet", ErrUnavailable)
	}
	return nil
}

// readLoop owns the Pub/Sub connection: it builds one, reads everything from it, and builds a
// new one whenever it fails. It never blocks on a connection's socket: dispatch only queues.
func (h *Hub) readLoop(ctx context.Context) {
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		ps, err := h.connect(ctx)
		if err != nil {
			h.log.Warn("pubsub connect failed", "err", err, "retry_in", backoff)
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
					h.log.Warn("pubsub connection lost; rebuilding it", "err", err)
				}
				break
			}
			h.lastRecv.Store(time.Now().UnixNano())
			switch m := m.(type) {
			case *redis.Message:
				h.dispatch(m)
			case *redis.Subscription:
				if h.confirm(ps, m) {
					backoff = 50 * time.Millisecond
				}
			}
		}
		h.disconnect(ps)
	}
}

// connect builds a new Pub/Sub connection and subscribes the node channel on it. Every user
// channel is subscribed again (and its connections caught up) once that is confirmed.
func (h *Hub) connect(ctx context.Context) (*redis.PubSub, error) {
	ps := h.rdb.Subscribe(ctx)
	h.mu.Lock()
	if !h.psStarted.IsZero() {
		h.reconnects.Add(1)
	}
	h.ps, h.psStarted, h.connected = ps, time.Now(), false
	h.unconfirmed = 0
	for _, c := range h.channels {
		c.inflight, c.subscribed = 0, false
		if c.ready {
			c.ready, c.readyCh = false, make(chan struct{})
			c.needCatchup = true
		}
	}
	h.mu.Unlock()
	if err := ps.Subscribe(ctx, h.keys.nodeChannel(h.cfg.Node)); err != nil {
		h.disconnect(ps)
		return nil, err
	}
	return ps, nil
}

// disconnect forgets ps and closes it.
func (h *Hub) disconnect(ps *redis.PubSub) {
	h.mu.Lock()
	if h.ps == ps {
		h.ps, h.connected = nil, false
	}
	h.mu.Unlock()
	_ = ps.Close()
}

// confirm handles a subscribe or unsubscribe confirmation. It reports whether it was the
// node channel's, which means the connection is up.
func (h *Hub) confirm(ps *redis.PubSub, m *redis.Subscription) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ps != ps {
		return false
	}
	if m.Channel == h.keys.nodeChannel(h.cfg.Node) {
		if m.Kind != "subscribe" {
			return false
		}
		if h.connected {
			// go-redis reconnected by itself inside a call and resubscribed; what was
			// published meanwhile is missing, so rebuild and catch everyone up.
			h.log.Warn("pubsub connection was re-established underneath; rebuilding it")
			go ps.Close()
			return false
		}
		h.connected = true
		for _, c := range h.channels {
			h.markDirty(c)
		}
		h.wakeFlusher()
		return true
	}
	if h.unconfirmed > 0 {
		if h.unconfirmed--; h.unconfirmed == 0 && len(h.dirty) > 0 {
			h.wakeFlusher()
		}
	}
	c := h.channels[m.Channel]
	if c == nil {
		return false
	}
	if c.inflight > 0 {
		c.inflight--
	}
	if c.inflight > 0 {
		return false // a later command on this channel decides its state
	}
	switch {
	case c.subscribed && m.Kind == "subscribe":
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
		delete(h.channels, c.name)
	}
	return false
}

// dispatch hands a published message to the local subscriptions of its channel.
func (h *Hub) dispatch(m *redis.Message) {
	msg, ok := decodeMessage(m.Payload)
	if !ok {
		return
	}
	h.mu.RLock()
	if c := h.channels[m.Channel]; c != nil {
		for _, s := range c.subs {
			s.offer(msg)
		}
	}
	h.mu.RUnlock()
}

// markDirty queues c for the flusher; mu must be held.
func (h *Hub) markDirty(c *channel) {
	if !c.queued {
		c.queued = true
		h.dirty = append(h.dirty, c)
	}
}

func (h *Hub) wakeFlusher() {
	select {
	case h.flush <- struct{}{}:
	default:
	}
}

// flushLoop writes subscription changes to the Pub/Sub connection. Changes that pile up
// while a write is in flight go out together, so a connect storm of thousands of users
// costs a few SUBSCRIBE commands, not one each.
func (h *Hub) flushLoop(ctx context.Context) {
	const chunk = 1024
	for {
		select {
		case <-ctx.Done():
			return
		case <-h.flush:
		}
		h.mu.Lock()
		ps := h.ps
		if ps == nil || !h.connected {
			h.mu.Unlock()
			continue // the next connection re-queues every channel
		}
		if h.unconfirmed > 0 {
			h.mu.Unlock()
			continue // the last confirmation wakes us
		}
		var subs, unsubs []string
		for _, c := range h.dirty {
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
				delete(h.channels, c.name)
			}
		}
		clear(h.dirty)
		h.dirty = h.dirty[:0]
		h.unconfirmed = len(subs) + len(unsubs)
		h.mu.Unlock()

		var err error
		for i := 0; i < len(unsubs) && err == nil; i += chunk {
			err = ps.Unsubscribe(ctx, unsubs[i:min(i+chunk, len(unsubs))]...)
		}
		for i := 0; i < len(subs) && err == nil; i += chunk {
			err = ps.Subscribe(ctx, subs[i:min(i+chunk, len(subs))]...)
		}
		if err != nil && ctx.Err() == nil {
			// The reader sees the closed connection and builds a new one, which subscribes
			// every wanted channel again.
			h.log.Warn("pubsub write failed; rebuilding the connection", "err", err)
			_ = ps.Close()
		}
	}
}

// watchdog pings through the Pub/Sub connection and rebuilds it when it stays quiet: a
// frozen or black-holed Redis is not noticed by go-redis (LIBS.md B4).
func (h *Hub) watchdog(ctx context.Context) {
	t := time.NewTicker(h.cfg.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		h.mu.RLock()
		ps, started := h.ps, h.psStarted
		h.mu.RUnlock()
		if ps == nil {
			continue
		}
		last := time.Unix(0, h.lastRecv.Load())
		if started.After(last) {
			last = started
		}
		if time.Since(last) > 3*h.cfg.Heartbeat {
			h.log.Warn("pubsub connection quiet; rebuilding it", "quiet_for", time.Since(last).Round(time.Millisecond))
			_ = ps.Close()
			continue
		}
		if err := ps.Ping(ctx); err != nil && ctx.Err() == nil {
			_ = ps.Close()
		}
	}
}

// healthLoop pings Redis on the command client every heartbeat for readiness. It runs apart
// from the watchdog because a PING to a frozen Redis blocks until the client's read timeout.
func (h *Hub) healthLoop(ctx context.Context) {
	t := time.NewTicker(h.cfg.Heartbeat)
	defer t.Stop()
	for {
		h.checkRedis(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (h *Hub) checkRedis(ctx context.Context) {
	pctx, cancel := context.WithTimeout(ctx, h.cfg.Heartbeat)
	defer cancel()
	sent := time.Now()
	now, err := h.rdb.Time(pctx).Result()
	ok := err == nil
	if ok {
		// Redis read its clock about halfway through the round trip.
		local := sent.Add(time.Since(sent) / 2)
		h.clockOffset.Store(now.UnixMilli() - local.UnixMilli())
	}
	if h.redisOK.Swap(ok) != ok {
		if ok {
			h.log.Info("redis is reachable")
		} else if ctx.Err() == nil {
			h.log.Warn("redis does not answer")
		}
	}
}
