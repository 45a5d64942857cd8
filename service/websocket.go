package service

import (
	"bufio"
	"context"
	"errors"
	"net/http"
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
	netConn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		s.log.Debug("websocket hijack failed", "err", err)
		return
	}
	// gws's answer is held until the welcome (see handshakeConn); gws reads through br.
	br := bufio.NewReaderSize(netConn, wsReadBufferSize)
	conn, err := s.upgrader.UpgradeFromConn(&handshakeConn{Conn: netConn}, br, r)
	if err != nil {
		s.log.Debug("websocket upgrade failed", "err", err)
		return
	}
	c.conn = conn
	conn.Session().Store(sessionKey, c)
	if !s.register(c) {
		_ = conn.WriteClose(closeRestarting, []byte("server restarting"))
		return
	}
	go func() {
		defer s.wg.Done()
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

func (s *Server) closeClients(code uint16, reason string) {
	s.eachClient(func(c *client) { c.close(code, reason) })
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

	// Frame rate limiting; touched only on the read loop goroutine.
	tokens  float64
	refill  time.Time
	limited int // frames refused in a row
	// userRefused counts frames refused in a row by the user's limits (allowFrameOfUser).
	userRefused int

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
}

var _ subscriptions.PacedSink = (*client)(nil)

// Room implements subscriptions.PacedSink: a replay may fill half the queue; the rest
// follows as it drains.
func (c *client) Room(n int, resume func()) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return true // nothing will drain; let the replay finish into the void
	}
	empty := len(c.queue) == 0 && c.bytes == 0 // even a message over half the budget fits then
	if empty || len(c.queue) < c.s.cfg.MaxQueueMessages/2 && c.bytes+n <= c.s.cfg.MaxQueueBytes/2 {
		return true
	}
	c.onDrained = resume
	return false
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
	closed := c.s.metrics.rejected
	switch {
	case errors.Is(reason, subscriptions.ErrKicked):
		closed.WithLabelValues("kicked").Inc()
		c.close(closeKicked, "disconnected by the service")
	case errors.Is(reason, subscriptions.ErrUnavailable):
		closed.WithLabelValues("redis_unavailable").Inc()
		c.close(closeTryAgainLater, "redis unavailable; reconnect and resume")
	case errors.Is(reason, subscriptions.ErrLagged):
		closed.WithLabelValues("lagged").Inc()
		c.close(closeTryAgainLater, "fell behind the history; reconnect and resume")
	default:
		c.s.slowCloses.Add(1)
		closed.WithLabelValues("slow_consumer").Inc()
		c.close(closeTryAgainLater, "too slow; reconnect and resume")
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
	_ = c.conn.SetWriteDeadline(time.Now().Add(c.s.cfg.WriteTimeout))
	_ = c.conn.WritePing(nil)
}

// closeWriteTimeout bounds how long a close waits for a write stuck on a peer that does not
// read; a peer that reads again within it still gets the close frame with its code.
const closeWriteTimeout = 3 * time.Second

// close sends a close frame with code and closes the connection.
func (c *client) close(code uint16, reason string) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.queue = nil
	c.mu.Unlock()
	go func() {
		c.wmu.Lock() // after a batch being written, never inside it
		defer c.wmu.Unlock()
		_ = c.conn.SetWriteDeadline(time.Now().Add(closeWriteTimeout))
		_ = c.conn.WriteClose(code, []byte(reason))
	}()
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
	// gws recovers panics only in OnMessage.
	defer func() {
		if v := recover(); v != nil {
			s.log.Error("panic opening a connection", "user", c.user, "panic", v)
			c.close(closeInternalError, "internal error")
		}
	}()
	_ = conn.SetReadDeadline(time.Now().Add(s.cfg.ReadTimeout))
	ctx, cancel := context.WithTimeout(s.ctx, subscribeTimeout)
	defer cancel()
	sub, w, err := s.hub.Subscribe(ctx, c.user, c.since, c)
	if err != nil {
		s.log.Warn("subscribe failed", "user", c.user, "err", err)
		c.close(closeTryAgainLater, "redis unavailable; reconnect and resume")
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
	c.mu.Lock()
	c.closed = true
	c.queue = nil
	c.mu.Unlock()
	if c.sub != nil {
		c.sub.Close()
	}
	if c.counted {
		// Also while the node drains (its context is cancelled then), but not forever.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(h.s.ctx), 10*time.Second)
		if err := h.s.cfg.Events.Presence().Disconnected(ctx, c.user, h.s.hub.Node(), c.id); err != nil {
			h.s.log.Warn("uncounting a connection failed; the user stays online until this node's entry expires", "user", c.user, "err", err)
		}
		cancel()
	}
	h.s.unregister(c)
}

func (h *wsHandler) OnPing(conn *gws.Conn, payload []byte) {
	_ = conn.SetReadDeadline(time.Now().Add(h.s.cfg.ReadTimeout))
	_ = conn.SetWriteDeadline(time.Now().Add(h.s.cfg.WriteTimeout))
	_ = conn.WritePong(payload)
}

func (h *wsHandler) OnPong(conn *gws.Conn, _ []byte) {
	_ = conn.SetReadDeadline(time.Now().Add(h.s.cfg.ReadTimeout))
}

func (h *wsHandler) OnMessage(conn *gws.Conn, msg *gws.Message) {
	defer msg.Close()
	c := clientOf(conn)
	_ = conn.SetReadDeadline(time.Now().Add(h.s.cfg.ReadTimeout))
	if !c.allowFrame() {
		if c.limited > h.s.cfg.FrameBurst {
			h.s.metrics.rejected.WithLabelValues("rate_limited").Inc()
			c.close(closePolicy, "rate limit exceeded")
			return
		}
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

// allowFrame takes a token from the connection's bucket.
func (c *client) allowFrame() bool {
	now := time.Now()
	if !c.refill.IsZero() {
		c.tokens = min(float64(c.s.cfg.FrameBurst), c.tokens+now.Sub(c.refill).Seconds()*c.s.cfg.FrameRate)
	}
	c.refill = now
	if c.tokens < 1 {
		c.limited++
		return false
	}
	c.tokens--
	c.limited = 0
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
