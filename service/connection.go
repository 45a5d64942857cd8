package service

import (
	"context"
	"runtime/debug"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/lxzan/gws"

	"github.com/switchboard-dev/switchboard/subscriptions"
)

// subscribeTimeout bounds how long a new connection waits for Redis to confirm its channel.
const subscribeTimeout = 10 * time.Second

// closeWriteTimeout bounds how long a close waits for a write stuck on a peer that does not
// read; a peer that reads again within it still gets the close frame with its code.
const closeWriteTimeout = 3 * time.Second

const sessionKey = "c"

// client is one WebSocket connection: a subscriptions.Sink whose messages go through its
// outbox, so that nothing ever blocks on its socket. Its life: handleWS upgrades and
// registers it, readLoop runs gws's read loop (OnOpen subscribes, OnMessage dispatches,
// OnClose releases), and close ends it from any goroutine.
type client struct {
	s     *Server
	conn  *gws.Conn
	user  string
	since string
	// perm is what the connection may do (its token's grants); expiry ends it with its
	// token (its first exp and grace, from its identity, scheduled once the welcome is
	// out).
	perm   perm
	exp    time.Time
	grace  time.Duration
	expiry expiry
	// rpcs counts the rpc calls waiting for the backend (startRPC); rpcCtx ends them with
	// the connection. rpcCtx and rpcCancel are set and used on the read loop goroutine.
	rpcs      atomic.Int32
	rpcCtx    context.Context
	rpcCancel context.CancelFunc
	// rooms are the user's rooms for the welcome, read before the upgrade: on the request's
	// goroutine, whose stack ends with it, not on the long-lived read loop's.
	rooms []string
	// roomSince are the positions the client resumes its big rooms from (room_since).
	roomSince map[string]subscriptions.StreamID
	sub       *subscriptions.Subscription // set in OnOpen, read in OnClose: same goroutine
	id        string                      // this connection's id in presence counts
	// counted is set once presence counted the connection, so that only a counted
	// connection is uncounted; OnOpen and OnClose run on the same goroutine.
	counted bool

	// sock is the socket as the guard reads it and as gws closes it (see linger).
	sock linger
	// Frame rate limiting (see framerate.go), fed by the guard with every frame; touched
	// only on the read loop goroutine (the guard reads on it, as does OnMessage).
	guard   frameGuard
	tokens  float64
	debt    float64 // refused frames (by either limit), decaying by FrameBurst per refusalWindow
	refill  time.Time
	partial bool // a frame of the message being received was refused
	// verdicts holds, for each message whose last frame the guard passed and OnMessage
	// has not handled yet, whether it was refused: the guard reads ahead of gws (a read
	// holds several frames), so the verdict travels with the message. Bit seen%N is the
	// verdict of the seen-th message.
	verdicts     [verdictRing / 64]uint64
	seen, served uint32

	reads readBudget // history and presence frames (history.go); read loop only

	out      outbox
	drainJob func() // out.drain as a job on gws's write queue, made once
	nowJob   func() // out.drainNow as a job on the node's shared writers, made once
	// releaseResume gives back the user's resume slot (Hub.ReserveResume); nil without
	// since. Called when the replay is over or the connection ends, whichever is first.
	releaseResume func()
}

var _ subscriptions.PacedSink = (*client)(nil)

// attach gives c its upgraded connection; the outbox writes frames straight to the socket:
// first from the node's shared writers, without waiting (writeQueue), then, for what a
// socket did not take, from drain jobs on gws's per-connection write queue, in order with
// the pings. A compressed connection's frames go through gws, and only by drain jobs.
func (c *client) attach(conn *gws.Conn) {
	c.conn = conn
	c.drainJob = c.writeJob(c.out.drain)
	c.out.init(conn.NetConn(), func() { conn.Async(c.drainJob) }, outboxLimits{
		maxMessages:  c.s.cfg.MaxQueueMessages,
		maxBytes:     c.s.cfg.MaxQueueBytes,
		writeTimeout: c.s.cfg.WriteTimeout,
	})
	if hc, ok := conn.NetConn().(*handshakeConn); ok && hc.raw != nil && c.out.writeFrames == nil {
		c.nowJob = c.writeJob(c.out.drainNow)
		c.out.useWriteQueue(func() { c.s.writes.add(c.nowJob) }, func(frames [][]byte) tryResult {
			return tryWriteTextFrames(hc, frames)
		})
	}
	conn.Session().Store(sessionKey, c)
}

// writeJob wraps one of the outbox's drains as a job: a panic in it ends this connection,
// not the goroutine that runs it (gws's write queue, or a writer every connection shares).
func (c *client) writeJob(drain func()) func() {
	return func() {
		defer c.recoverPanic("drain")
		c.s.testPanic(c, "drain")
		drain()
	}
}

// readLoop runs gws's read loop on the connection's own goroutine, counted in s.wg by
// register.
func (c *client) readLoop() {
	defer c.s.wg.Done()
	// Last, after OnClose (or the recovery below) released what the connection held:
	// lingering on a closed connection holds nothing but this goroutine and the socket.
	defer c.sock.finish()
	// gws recovers panics only in OnMessage; one anywhere else on this goroutine (its
	// frame parser, OnOpen, OnPing, OnPong, OnClose) unwinds ReadLoop, and would end the
	// process. It ends this connection instead, and runs what OnClose would have.
	defer func() {
		if v := recover(); v != nil {
			c.logPanic("read loop", v)
			c.closeHere(disconnectPanic)
			defer func() {
				if v := recover(); v != nil { // the same step again: give up on the rest
					c.logPanic("cleanup", v)
				}
			}()
			c.release()
		}
	}()
	c.conn.ReadLoop()
}

// Room implements subscriptions.PacedSink with the outbox's room for a paced replay.
func (c *client) Room(n, limit int, resume func()) bool { return c.out.room(n, limit, resume) }

// Replayed implements subscriptions.PacedSink: the replay is over, and the user's resume
// slot is free for another.
func (c *client) Replayed() {
	if c.releaseResume != nil {
		c.releaseResume()
	}
}

// Deliver queues a message envelope; false means the queue is full.
func (c *client) Deliver(m subscriptions.Message) bool {
	switch c.out.push(m.Payload) {
	case pushFull:
		return false
	case pushQueued:
		c.s.metrics.messagesOut.Inc()
	}
	return true
}

// Drop closes the connection because the hub gave up on it; the client resumes.
func (c *client) Drop(reason error) {
	d := disconnectFor(reason)
	if c.close(d) && d == disconnectSlow {
		c.s.slowCloses.Add(1)
	}
}

// enqueue adds a frame to the outgoing queue. It returns false, queuing nothing, when the
// queue is over its bounds; the caller then closes the connection. A closed connection
// takes every frame and discards it (true): it is not slow, its end is under way, and
// the Sink contract keeps false for a client that cannot keep up.
func (c *client) enqueue(frame []byte) bool { return c.out.push(frame) != pushFull }

// send queues a frame the server generated; a full queue closes the connection.
func (c *client) send(frame []byte) {
	if !c.enqueue(frame) {
		c.Drop(subscriptions.ErrSlowConsumer)
	}
}

func (c *client) ping() {
	defer c.recoverPanic("ping")
	_ = c.conn.SetWriteDeadline(time.Now().Add(c.s.cfg.WriteTimeout))
	_ = c.conn.WritePing(nil)
}

// close sends d's close frame and closes the connection, unless it is closed already. The
// first close of a connection, and only that one, is counted in
// switchboard_connections_closed_total under d's label; it reports whether it was the
// first. The close frame is written on a goroutine of its own, because close is called
// from goroutines that must not wait on this socket (the hub's dispatch); the goroutine
// is counted in s.wg while the outbox is being shut, before the connection's read loop
// can release it and end, so that Serve's shutdown (waitClients) waits for it too.
func (c *client) close(d disconnect) bool {
	if !c.out.shut(func() { c.s.wg.Add(1) }) {
		return false
	}
	c.s.metrics.rejected.WithLabelValues(d.label).Inc()
	go func() {
		defer c.s.wg.Done()
		defer c.recoverPanic("close")
		c.writeClose(d)
	}()
	return true
}

func (c *client) writeClose(d disconnect) {
	c.out.exclusive(func() {
		_ = c.conn.SetWriteDeadline(time.Now().Add(closeWriteTimeout))
		_ = c.conn.WriteClose(d.code, []byte(d.reason))
	})
}

// framesFailed implements frameOwner: the close frame is written before the guard hands
// gws its error, on the read loop goroutine, because gws would otherwise answer that
// error with a close of its own choosing (1000) — it sends only codes from its internal
// package — and a hostile peer is the one waiting on the write lock.
func (c *client) framesFailed(v *frameViolation) { c.closeHere(disconnect(*v)) }

// closeHere is close on the read loop's goroutine, which may wait on the socket: the close
// frame is out when it returns, before the read loop ends and finishes the socket.
func (c *client) closeHere(d disconnect) {
	if c.out.shut(nil) {
		c.s.metrics.rejected.WithLabelValues(d.label).Inc()
		c.writeClose(d)
	}
}

// recoverPanic, deferred on a connection's goroutines, turns a panic into the end of
// that connection (1011) and a log line, instead of the end of the process.
func (c *client) recoverPanic(where string) {
	if v := recover(); v != nil {
		c.logPanic(where, v)
		c.close(disconnectPanic)
	}
}

func (c *client) logPanic(where string, v any) {
	c.s.log.Error("panic on a websocket; closing it", "where", where, "user", c.user, "panic", v, "stack", string(debug.Stack()))
}

// testPanic calls the hook a test set with SetPanicHook (export_test), which may panic
// at where on c's goroutines; production never sets it.
func (s *Server) testPanic(c *client, where string) {
	if h := s.panicHook.Load(); h != nil {
		(*h)(c.user, where)
	}
}

// wsHandler receives gws's events. OnOpen, OnMessage, OnPing, OnPong and OnClose of one
// connection all run on its read loop goroutine.
type wsHandler struct {
	gws.BuiltinEventHandler
	s *Server
}

func clientOf(conn *gws.Conn) *client {
	v, _ := conn.Session().Load(sessionKey)
	return v.(*client)
}

// OnOpen subscribes the connection, counts it in presence and welcomes it; a subscribe
// that fails closes it with the code its cause deserves (disconnectFor).
func (h *wsHandler) OnOpen(conn *gws.Conn) {
	c := clientOf(conn)
	s := h.s
	// gws recovers panics only in OnMessage; the read loop's goroutine would recover this
	// one too, but stop reading for it.
	defer c.recoverPanic("OnOpen")
	s.testPanic(c, "OnOpen")
	_ = conn.SetReadDeadline(time.Now().Add(s.cfg.ReadTimeout))
	ctx, cancel := context.WithTimeout(s.ctx, subscribeTimeout)
	defer cancel()
	sub, w, err := s.hub.Subscribe(ctx, c.user, c.since, c)
	if err != nil {
		s.log.Warn("subscribe failed", "user", c.user, "err", err)
		c.close(disconnectFor(err))
		return
	}
	c.sub = sub
	big, err := s.hub.SubscribeRooms(ctx, sub, c.rooms, c.roomSince)
	if err != nil {
		s.log.Warn("subscribing big rooms failed", "user", c.user, "err", err)
		c.close(disconnectFor(err))
		return
	}
	// Counted before the welcome, so that user.online precedes anything the client does.
	if q := s.cfg.Events; q != nil {
		c.id = s.hub.Node() + "-" + strconv.FormatInt(s.connSeq.Add(1), 10)
		if err := q.Presence().Connected(ctx, c.user, s.hub.Node(), c.id); err != nil {
			s.log.Warn("counting a connection failed; its user.online may be missing", "user", c.user, "err", err)
		} else {
			c.counted = true
		}
	}
	c.send(encodeFrame(welcomeFrame{Type: "welcome", User: c.user, Node: s.hub.Node(), Recovered: w.Recovered, LastID: w.Position.String(), Rooms: c.rooms, BigRooms: big}))
	c.rooms, c.roomSince = nil, nil
	// After the welcome, which is always the first frame: an expiring frame may be due at
	// once.
	c.scheduleExpiry(c.exp, c.grace)
	sub.Start()
}

// OnClose runs once the socket is closed, whoever closed it.
func (h *wsHandler) OnClose(conn *gws.Conn, _ error) {
	c := clientOf(conn)
	h.s.testPanic(c, "OnClose")
	c.release()
}

// release undoes what the connection holds: its subscription, its presence count, its
// place in the registry. It runs from OnClose, or from the read loop's recovery when a
// panic cut ReadLoop short (OnClose then never runs, or ran in part): each step is marked
// done before it starts, so that none runs twice, even if one of them panicked.
func (c *client) release() {
	c.out.shut(nil)
	c.stopExpiry()
	c.endRPCs()
	if sub := c.sub; sub != nil {
		c.sub = nil
		sub.Close()
	}
	c.Replayed() // a connection that ends mid-replay gives its resume slot back too
	c.s.testPanic(c, "unsubscribed")
	if c.counted {
		c.counted = false
		s := c.s
		s.testPanic(c, "uncount")
		// Also while the node drains (its context is cancelled then), but not forever.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), 10*time.Second)
		if err := s.cfg.Events.Presence().Disconnected(ctx, c.user, s.hub.Node(), c.id); err != nil {
			s.log.Warn("uncounting a connection failed; the user stays online until this node's entry expires", "user", c.user, "err", err)
		}
		cancel()
	}
	c.s.unregister(c)
}

// OnPing answers a client's ping; a ping is a sign of life, as any frame.
func (h *wsHandler) OnPing(conn *gws.Conn, payload []byte) {
	h.s.testPanic(clientOf(conn), "OnPing")
	_ = conn.SetReadDeadline(time.Now().Add(h.s.cfg.ReadTimeout))
	_ = conn.SetWriteDeadline(time.Now().Add(h.s.cfg.WriteTimeout))
	_ = conn.WritePong(payload)
}

// OnPong keeps the connection alive: the answer to the heartbeat's ping.
func (h *wsHandler) OnPong(conn *gws.Conn, _ []byte) {
	h.s.testPanic(clientOf(conn), "OnPong")
	_ = conn.SetReadDeadline(time.Now().Add(h.s.cfg.ReadTimeout))
}
