package service

import (
	"bufio"
	"context"
	"errors"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lxzan/gws"

	"github.com/switchboard-dev/switchboard/events"
	"github.com/switchboard-dev/switchboard/subscriptions"
)

// Close codes the server uses.
const (
	closeTryAgainLater = 1013 // slow consumer, or Redis unavailable: reconnect and resume
	closeRestarting    = 1012 // the node drains: reconnect elsewhere and resume
	closeInternalError = 1011
	closePolicy        = 1008 // sustained abuse: do not reconnect by yourself
	closeKicked        = 4001 // DELETE /v1/users/{user}/connections: do not reconnect by yourself
)

// subscribeTimeout bounds how long a new connection waits for Redis to confirm its channel.
const subscribeTimeout = 10 * time.Second

// handleWS authenticates and checks a WebSocket request before upgrading it, so that
// refusals are plain HTTP answers, then hands the connection to its own read loop.
func (s *Server) handleWS(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		writeError(w, &apiError{status: http.StatusServiceUnavailable, code: codeUnavailable, message: "node is draining"})
		return
	}
	// Before anything else, so that every attempt from an address counts, failed ones too.
	if err := s.cfg.Limiter.allowIP(r); err != nil {
		s.countLimited(err)
		writeError(w, err)
		return
	}
	user, err := s.authenticate(r)
	if err != nil {
		writeError(w, err)
		return
	}
	if !s.originAllowed(r) {
		writeError(w, &apiError{status: http.StatusForbidden, code: codeForbidden, message: "origin not allowed"})
		return
	}
	if !isUpgrade(r) {
		// gws would answer in plain text; every refusal here is a JSON error.
		w.Header().Set("Upgrade", "websocket")
		writeError(w, &apiError{status: http.StatusUpgradeRequired, code: codeBadRequest, message: "this endpoint speaks WebSocket (version 13) only"})
		return
	}
	since := r.URL.Query().Get("since")
	if since != "" {
		if _, err := subscriptions.ParseStreamID(since); err != nil {
			writeError(w, errBadRequest(codeBadRequest, "since must be a message id <ms>-<seq>"))
			return
		}
	}
	if s.hub.LocalConnections(user) >= s.cfg.MaxConnsPerUser {
		writeError(w, &apiError{status: http.StatusTooManyRequests, code: codeRateLimited, message: "too many connections for this user"})
		return
	}
	// Last before the upgrade, so that only a connection that would open takes from the
	// user's budget (the IP's was taken first, above).
	if err := s.cfg.Limiter.allowUserConn(r.Context(), user); err != nil {
		s.countLimited(err)
		writeError(w, err)
		return
	}
	c := &client{s: s, user: user, since: since, tokens: float64(s.cfg.FrameBurst)}
	if since != "" {
		// A replay costs the node reads and memory for as long as its client takes to read
		// it: a user gets a few at once, and a plain connect is never refused for it.
		release, ok := s.hub.ReserveResume(user)
		if !ok {
			w.Header().Set("Retry-After", "1")
			writeError(w, &apiError{status: http.StatusTooManyRequests, code: codeRateLimited, message: "too many resumes under way for this user; retry shortly"})
			return
		}
		c.releaseResume = release
		defer func() {
			if c.conn == nil { // not upgraded: OnClose will not release it
				release()
			}
		}()
	}
	netConn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		s.log.Debug("websocket hijack failed", "err", err)
		return
	}
	// gws's answer is held until the welcome (see handshakeConn); gws reads through br,
	// which reads through the frame guard, so that gws never parses a frame RFC 6455
	// forbids (see frameGuard) and every frame is counted.
	c.guard = frameGuard{r: netConn, owner: c}
	br := bufio.NewReaderSize(&c.guard, wsReadBufferSize)
	conn, err := s.upgrader.UpgradeFromConn(&handshakeConn{Conn: netConn}, br, r)
	if err != nil {
		s.log.Debug("websocket upgrade failed", "err", err)
		return
	}
	c.conn = conn
	conn.Session().Store(sessionKey, c)
	if !s.register(c) {
		c.Replayed() // OnClose runs only for registered connections
		_ = conn.WriteClose(closeRestarting, []byte("server restarting"))
		return
	}
	go func() {
		defer s.wg.Done()
		// gws recovers panics only in OnMessage; one anywhere else on this goroutine (its
		// frame parser, OnOpen, OnPing, OnPong, OnClose) unwinds ReadLoop, and would end
		// the process. It ends this connection instead, and runs what OnClose would have.
		defer func() {
			if v := recover(); v != nil {
				c.logPanic("read loop", v)
				c.close(closeInternalError, "internal error", "panic")
				defer func() {
					if v := recover(); v != nil { // the same step again: give up on the rest
						c.logPanic("cleanup", v)
					}
				}()
				c.release()
			}
		}()
		conn.ReadLoop()
	}()
}

const sessionKey = "c"

// isUpgrade reports whether r is a WebSocket version 13 upgrade request.
func isUpgrade(r *http.Request) bool {
	return headerHasToken(r.Header, "Connection", "upgrade") &&
		headerHasToken(r.Header, "Upgrade", "websocket") &&
		r.Header.Get("Sec-WebSocket-Version") == "13" &&
		r.Header.Get("Sec-WebSocket-Key") != ""
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// register adds c to the node's clients unless the node is draining.
func (s *Server) register(c *client) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining.Load() {
		return false
	}
	s.clients[c] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *Server) unregister(c *client) {
	s.mu.Lock()
	delete(s.clients, c)
	s.mu.Unlock()
}

// eachClient calls f for a snapshot of the clients, outside the registry lock.
func (s *Server) eachClient(f func(*client)) {
	s.mu.Lock()
	list := make([]*client, 0, len(s.clients))
	for c := range s.clients {
		list = append(list, c)
	}
	s.mu.Unlock()
	for _, c := range list {
		f(c)
	}
}

// closeClients closes every connection, counted in closed_total under label.
func (s *Server) closeClients(code uint16, reason, label string) {
	s.eachClient(func(c *client) { c.close(code, reason, label) })
}

// waitClients waits until every connection's read loop has ended, or ctx ends.
func (s *Server) waitClients(ctx context.Context) {
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		s.log.Warn("websockets still open after the drain timeout")
	}
}

// heartbeat pings every WebSocket each PingInterval; browsers answer pings but never send
// them, so this and the read deadline are what find dead peers.
func (s *Server) heartbeat(ctx context.Context) {
	t := time.NewTicker(s.cfg.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.eachClient(func(c *client) { c.conn.Async(c.ping) })
	}
}

// client is one WebSocket connection: a subscriptions.Sink with a bounded outgoing queue
// drained by gws's per-connection writer, so that nothing ever blocks on its socket.
type client struct {
	s     *Server
	conn  *gws.Conn
	user  string
	since string
	sub   *subscriptions.Subscription // set in OnOpen, read in OnClose: same goroutine
	id    string                      // this connection's id in presence counts
	// counted is set once presence counted the connection, so that only a counted
	// connection is uncounted; OnOpen and OnClose run on the same goroutine.
	counted bool

	// Frame rate limiting, fed by the guard with every frame; touched only on the read
	// loop goroutine (the guard reads on it, as does OnMessage).
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

	// wmu orders the data frames drain writes straight to the socket with the close frame
	// close writes through gws.
	wmu           sync.Mutex
	writeDeadline time.Time // the socket's write deadline drain last set; under wmu
	mu            sync.Mutex
	queue         [][]byte
	spare         [][]byte
	bytes         int  // queued and not yet written
	writing       bool // a drain job is scheduled
	closed        bool
	// onDrained continues a paced replay once the queue has drained (see Room).
	onDrained func()
	// releaseResume gives back the user's resume slot (Hub.ReserveResume); nil without
	// since. Called when the replay is over or the connection ends, whichever is first.
	releaseResume func()
}

var _ subscriptions.PacedSink = (*client)(nil)

// Room implements subscriptions.PacedSink: a replay may fill the queue up to limit bytes
// (the half of the replay's budget that is not read ahead) and at most half the queue's
// bounds; the rest follows as it drains.
func (c *client) Room(n, limit int, resume func()) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		// Nothing will drain, and reading the rest of the history would be for nobody; the
		// subscription is closed by OnClose.
		return false
	}
	limit = min(limit, c.s.cfg.MaxQueueBytes/2)
	empty := len(c.queue) == 0 && c.bytes == 0 // even a message over the limit fits then
	if empty || len(c.queue) < c.s.cfg.MaxQueueMessages/2 && c.bytes+n <= limit {
		return true
	}
	c.onDrained = resume
	return false
}

// Replayed implements subscriptions.PacedSink: the replay is over, and the user's resume
// slot is free for another.
func (c *client) Replayed() {
	if c.releaseResume != nil {
		c.releaseResume()
	}
}

// Deliver queues a message envelope; false means the queue is full.
func (c *client) Deliver(m subscriptions.Message) bool {
	if !c.enqueue(m.Payload) {
		return false
	}
	c.s.metrics.messagesOut.Inc()
	return true
}

// Drop closes the connection because the hub gave up on it; the client resumes.
func (c *client) Drop(reason error) {
	switch {
	case errors.Is(reason, subscriptions.ErrKicked):
		c.close(closeKicked, "disconnected by the service", "kicked")
	case errors.Is(reason, subscriptions.ErrUnavailable):
		c.close(closeTryAgainLater, "redis unavailable; reconnect and resume", "redis_unavailable")
	case errors.Is(reason, subscriptions.ErrLagged):
		c.close(closeTryAgainLater, "fell behind the history; reconnect and resume", "lagged")
	default:
		if c.close(closeTryAgainLater, "too slow; reconnect and resume", "slow_consumer") {
			c.s.slowCloses.Add(1)
		}
	}
}

// enqueue adds a frame to the outgoing queue. It returns false, queuing nothing, when the
// queue is over its bounds; the caller then closes the connection.
func (c *client) enqueue(frame []byte) bool {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return true
	}
	if len(c.queue) >= c.s.cfg.MaxQueueMessages || c.bytes+len(frame) > c.s.cfg.MaxQueueBytes {
		c.mu.Unlock()
		return false
	}
	c.queue = append(c.queue, frame)
	c.bytes += len(frame)
	schedule := !c.writing
	c.writing = true
	c.mu.Unlock()
	if schedule {
		c.conn.Async(c.drain)
	}
	return true
}

// send queues a frame the server generated; a full queue closes the connection.
func (c *client) send(frame []byte) {
	if !c.enqueue(frame) {
		c.Drop(subscriptions.ErrSlowConsumer)
	}
}

// drain writes what is queued, one batch per job so that pings queued behind it go out.
// The frames of a batch go out in one system call (writev): under fan-out or a replay a
// connection often has several queued, and it is the call, not the bytes, that costs.
func (c *client) drain() {
	defer c.recoverPanic("drain")
	c.s.testPanic(c, "drain")
	c.mu.Lock()
	batch := c.queue
	c.queue, c.spare = c.spare[:0], nil
	c.mu.Unlock()
	n := 0
	for _, frame := range batch {
		n += len(frame)
	}
	c.wmu.Lock()
	c.mu.Lock()
	closed := c.closed // no data frame may follow the close frame
	c.mu.Unlock()
	if !closed {
		// Moving the deadline costs a timer update in the runtime; it is moved only once
		// half of WriteTimeout has passed, so a write may block for ½–1 × WriteTimeout.
		if now := time.Now(); c.writeDeadline.Sub(now) < c.s.cfg.WriteTimeout/2 {
			c.writeDeadline = now.Add(c.s.cfg.WriteTimeout)
			_ = c.conn.SetWriteDeadline(c.writeDeadline)
		}
		if err := writeTextFrames(c.conn.NetConn(), batch); err != nil {
			// As gws does when a write fails: the read loop then ends and OnClose follows.
			_ = c.conn.NetConn().Close()
		}
	}
	c.wmu.Unlock()
	c.mu.Lock()
	c.bytes -= n
	clear(batch)
	c.spare = batch[:0]
	more := len(c.queue) > 0 && !c.closed
	c.writing = more
	var resume func()
	if c.onDrained != nil && len(c.queue) < c.s.cfg.MaxQueueMessages/4 && c.bytes < c.s.cfg.MaxQueueBytes/4 {
		resume, c.onDrained = c.onDrained, nil
	}
	c.mu.Unlock()
	if more {
		c.conn.Async(c.drain)
	}
	if resume != nil {
		resume()
	}
}

func (c *client) ping() {
	defer c.recoverPanic("ping")
	_ = c.conn.SetWriteDeadline(time.Now().Add(c.s.cfg.WriteTimeout))
	_ = c.conn.WritePing(nil)
}

// closeWriteTimeout bounds how long a close waits for a write stuck on a peer that does not
// read; a peer that reads again within it still gets the close frame with its code.
const closeWriteTimeout = 3 * time.Second

// close sends a close frame with code and closes the connection, unless it is closed
// already. The first close of a connection, and only that one, is counted in
// switchboard_connections_closed_total under label; it reports whether it was the first.
func (c *client) close(code uint16, reason, label string) bool {
	if !c.markClosed(label) {
		return false
	}
	go func() {
		defer c.recoverPanic("close")
		c.writeClose(code, reason)
	}()
	return true
}

// markClosed ends the connection's queue and counts why, once per connection.
func (c *client) markClosed(label string) bool {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return false
	}
	c.closed = true
	c.queue = nil
	c.mu.Unlock()
	c.s.metrics.rejected.WithLabelValues(label).Inc()
	return true
}

func (c *client) writeClose(code uint16, reason string) {
	c.wmu.Lock() // after a batch being written, never inside it
	defer c.wmu.Unlock()
	_ = c.conn.SetWriteDeadline(time.Now().Add(closeWriteTimeout))
	_ = c.conn.WriteClose(code, []byte(reason))
}

// framesFailed implements frameOwner: the close frame is written before the guard hands
// gws its error, on the read loop goroutine, because gws would otherwise answer that
// error with a close of its own choosing (1000) — it sends only codes from its internal
// package — and a hostile peer is the one waiting on the write lock.
func (c *client) framesFailed(v *frameViolation) {
	if c.markClosed(v.label) {
		c.writeClose(v.code, v.reason)
	}
}

// recoverPanic, deferred on a connection's goroutines, turns a panic into the end of
// that connection (1011) and a log line, instead of the end of the process.
func (c *client) recoverPanic(where string) {
	if v := recover(); v != nil {
		c.logPanic(where, v)
		c.close(closeInternalError, "internal error", "panic")
	}
}

func (c *client) logPanic(where string, v any) {
	c.s.log.Error("panic on a websocket; closing it", "where", where, "user", c.user, "panic", v, "stack", string(debug.Stack()))
}

// wsHandler receives gws's events. OnOpen, OnMessage, OnPong and OnClose of one connection
// all run on its read loop goroutine.
type wsHandler struct {
	gws.BuiltinEventHandler
	s *Server
}

func clientOf(conn *gws.Conn) *client {
	v, _ := conn.Session().Load(sessionKey)
	return v.(*client)
}

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
		c.close(closeTryAgainLater, "redis unavailable; reconnect and resume", "redis_unavailable")
		return
	}
	c.sub = sub
	// Counted before the welcome, so that user.online precedes anything the client does.
	if q := s.cfg.Events; q != nil {
		c.id = s.hub.Node() + "-" + strconv.FormatInt(s.connSeq.Add(1), 10)
		if err := q.Presence().Connected(ctx, c.user, s.hub.Node(), c.id); err != nil {
			s.log.Warn("counting a connection failed; its user.online may be missing", "user", c.user, "err", err)
		} else {
			c.counted = true
		}
	}
	c.send(encodeFrame(welcomeFrame{Type: "welcome", User: c.user, Node: s.hub.Node(), Recovered: w.Recovered, LastID: w.Position.String()}))
	sub.Start()
}

func (h *wsHandler) OnClose(conn *gws.Conn, err error) {
	c := clientOf(conn)
	h.s.testPanic(c, "OnClose")
	c.release()
}

// release undoes what the connection holds: its subscription, its presence count, its
// place in the registry. It runs from OnClose, or from the read loop's recovery when a
// panic cut ReadLoop short (OnClose then never runs, or ran in part): each step is marked
// done before it starts, so that none runs twice, even if one of them panicked.
func (c *client) release() {
	c.mu.Lock()
	c.closed = true
	c.queue = nil
	c.mu.Unlock()
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

func (h *wsHandler) OnPing(conn *gws.Conn, payload []byte) {
	h.s.testPanic(clientOf(conn), "OnPing")
	_ = conn.SetReadDeadline(time.Now().Add(h.s.cfg.ReadTimeout))
	_ = conn.SetWriteDeadline(time.Now().Add(h.s.cfg.WriteTimeout))
	_ = conn.WritePong(payload)
}

func (h *wsHandler) OnPong(conn *gws.Conn, _ []byte) {
	h.s.testPanic(clientOf(conn), "OnPong")
	_ = conn.SetReadDeadline(time.Now().Add(h.s.cfg.ReadTimeout))
}

func (h *wsHandler) OnMessage(conn *gws.Conn, msg *gws.Message) {
	defer msg.Close()
	c := clientOf(conn)
	// gws's own recovery (gws.Recovery) would log and carry on with the connection.
	defer c.recoverPanic("OnMessage")
	h.s.testPanic(c, "OnMessage")
	_ = conn.SetReadDeadline(time.Now().Add(h.s.cfg.ReadTimeout))
	if c.refusedNext() {
		c.send(encodeFrame(errorFrame{Type: "error", Code: codeRateLimited, Message: "too many frames; slow down"}))
		return
	}
	if msg.Opcode != gws.OpcodeText {
		c.send(encodeFrame(errorFrame{Type: "error", Code: codeBadRequest, Message: "frames must be JSON text frames"}))
		return
	}
	f, err := decodeFrame(msg.Bytes(), h.s.cfg.MaxMessageBytes)
	if err != nil {
		var fe *frameError
		if errors.As(err, &fe) {
			c.send(encodeFrame(errorFrame{Type: "error", Ref: fe.ref, Code: fe.code, Message: fe.message}))
		}
		return
	}
	h.s.handleFrame(c, f)
}

// refusalWindow is how long a connection's refused frames weigh: it may have FrameBurst
// frames refused per refusalWindow (the count decays evenly), and one more closes it with
// 1008. A client briefly over the limit gets rate_limited error frames; one that keeps
// sending faster than FrameRate — by as little as FrameBurst per refusalWindow — is closed.
const refusalWindow = 10 * time.Second

// verdictRing bounds the messages the guard may have passed ahead of OnMessage: they all
// fit in gws's read buffer (a read past the buffer holds one payload, no header), and the
// smallest client frame is 6 bytes.
const verdictRing = 256

var (
	errRateLimited = &frameViolation{code: closePolicy, reason: "rate limit exceeded", label: "rate_limited"}
	errFramesAhead = &frameViolation{code: closePolicy, reason: "too many frames ahead", label: "rate_limited"}
)

// testPanic calls the hook a test set with setPanicHook (export_test), which may panic
// at where on c's goroutines; production never sets it.
func (s *Server) testPanic(c *client, where string) {
	if h := s.panicHook.Load(); h != nil {
		(*h)(c.user, where)
	}
}

// frameSeen implements frameOwner: every frame, control and continuation frames
// included, takes a token from the connection's bucket. A message with a refused frame is
// refused whole with an error frame (see OnMessage); too many refusals close the
// connection.
func (c *client) frameSeen(opcode byte, fin bool) *frameViolation {
	ok := c.allowFrame()
	if !ok && c.debt > float64(c.s.cfg.FrameBurst) {
		return errRateLimited
	}
	if opcode&0x08 != 0 {
		return nil // a control frame: counted, nothing to refuse
	}
	c.partial = c.partial || !ok
	if !fin {
		return nil
	}
	if c.seen-c.served >= verdictRing {
		return errFramesAhead
	}
	word, bit := c.seen/64%uint32(len(c.verdicts)), uint64(1)<<(c.seen%64)
	if c.partial {
		c.verdicts[word] |= bit
	} else {
		c.verdicts[word] &^= bit
	}
	c.seen++
	c.partial = false
	return nil
}

// refusedNext reports whether the message OnMessage is handling was refused by the rate
// limit when its frames arrived.
func (c *client) refusedNext() bool {
	if c.served == c.seen {
		return false // not through the guard: a test's client
	}
	word, bit := c.served/64%uint32(len(c.verdicts)), uint64(1)<<(c.served%64)
	c.served++
	return c.verdicts[word]&bit != 0
}

// allowFrame takes a token from the connection's bucket; a refusal adds to its debt.
func (c *client) allowFrame() bool {
	now := time.Now()
	if !c.refill.IsZero() {
		dt := now.Sub(c.refill).Seconds()
		burst := float64(c.s.cfg.FrameBurst)
		c.tokens = min(burst, c.tokens+dt*c.s.cfg.FrameRate)
		c.debt = max(0, c.debt-dt*burst/refusalWindow.Seconds())
	}
	c.refill = now
	if c.tokens < 1 {
		c.debt++
		return false
	}
	c.tokens--
	return true
}

// handleFrame carries out one valid client frame and answers it with an ack or an error.
func (s *Server) handleFrame(c *client, f clientFrame) {
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	if !c.allowFrameOfUser(ctx, f) {
		return
	}
	switch {
	case f.Type == "send" && f.To != "":
		id, err := s.hub.Publish(ctx, f.To, subscriptions.Envelope{From: c.user, Data: f.Data})
		if err != nil {
			c.sendError(f.Ref, err)
			return
		}
		s.metrics.messagesIn.WithLabelValues("ws", "direct").Inc()
		c.send(encodeFrame(ackFrame{Type: "ack", Ref: f.Ref, ID: id.String()}))
	case f.Type == "send":
		n, err := s.hub.PublishRoom(ctx, f.Room, subscriptions.Envelope{From: c.user, Data: f.Data}, true)
		if err != nil {
			c.sendError(f.Ref, err)
			return
		}
		s.metrics.messagesIn.WithLabelValues("ws", "room").Inc()
		c.send(encodeFrame(ackFrame{Type: "ack", Ref: f.Ref, Recipients: &n}))
	case f.Type == "join" || f.Type == "leave":
		if err := s.changeMembership(ctx, f.Room, c.user, f.Type == "join", events.ByClient); err != nil {
			c.sendError(f.Ref, err)
			return
		}
		c.send(encodeFrame(ackFrame{Type: "ack", Ref: f.Ref}))
	case f.Type == "event":
		if s.cfg.Events == nil {
			c.send(encodeFrame(errorFrame{Type: "error", Ref: f.Ref, Code: codeBadRequest, Message: "this server has no backend for events (--webhook-url)"}))
			return
		}
		err := s.cfg.Events.Emit(ctx, events.Event{Type: events.ClientEvent, User: c.user, Name: f.Name, Data: f.Data})
		if err != nil {
			c.sendError(f.Ref, err)
			return
		}
		// The ack means the event is queued in Redis, not that the backend saw it.
		c.send(encodeFrame(ackFrame{Type: "ack", Ref: f.Ref}))
	default:
		c.send(encodeFrame(errorFrame{Type: "error", Ref: f.Ref, Code: codeBadRequest, Message: f.Type + " frames are not supported yet"}))
	}
}

// sendError answers a failed frame with the error frame that classify gives err.
func (c *client) sendError(ref string, err error) {
	ae := classify(err)
	c.send(encodeFrame(errorFrame{Type: "error", Ref: ref, Code: ae.code, Message: ae.message}))
}
