package service

import (
	"bufio"
	"net/http"
	"strings"

	"github.com/switchboard-dev/switchboard/subscriptions"
)

// handleWS authenticates and checks a WebSocket request before upgrading it, so that
// refusals are plain HTTP answers, then hands the connection to its own read loop.
func (s *Server) handleWS(w http.ResponseWriter, r *http.Request) {
	id, since, ok := s.admit(w, r)
	if !ok {
		return
	}
	user := id.user
	rooms, err := s.hub.Rooms(r.Context(), user)
	if err != nil {
		writeError(w, err)
		return
	}
	roomSince, _ := parseRoomSince(r.URL.Query().Get("room_since")) // checked by admit
	c := &client{s: s, user: user, since: since, tokens: float64(s.cfg.FrameBurst),
		perm: s.permOf(id), exp: id.exp, grace: id.grace, rooms: rooms, roomSince: roomSince}
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
	// The guard reads through c.sock, which closes the socket so that close frames reach
	// the peer (see linger) once the upgrade succeeded.
	c.sock.conn = netConn
	c.guard = frameGuard{r: &c.sock, owner: c, limit: uint64(s.cfg.maxFramePayload()), deflate: s.deflateNegotiated(r)}
	br := bufio.NewReaderSize(&c.guard, wsReadBufferSize)
	conn, err := s.upgrader.UpgradeFromConn(newHandshakeConn(netConn, &c.sock), br, r)
	if err != nil {
		s.log.Debug("websocket upgrade failed", "err", err)
		return
	}
	c.sock.armed.Store(true)
	if c.guard.deflate {
		c.out.writeFrames = compressedWriter(conn)
	}
	c.attach(conn)
	if !s.register(c) {
		c.Replayed() // OnClose runs only for registered connections
		_ = conn.WriteClose(disconnectDraining.code, []byte(disconnectDraining.reason))
		c.sock.finish() // no read loop will
		return
	}
	go c.readLoop()
}

// admit runs the checks a WebSocket request must pass before it is upgraded, cheapest and
// least revealing first, and answers a refusal itself. It returns who the request is
// authenticated as and the id to resume after ("" for none).
func (s *Server) admit(w http.ResponseWriter, r *http.Request) (id *identity, since string, ok bool) {
	if s.draining.Load() {
		writeError(w, &apiError{status: http.StatusServiceUnavailable, code: codeUnavailable, message: "node is draining"})
		return nil, "", false
	}
	// Before anything else, so that every attempt from an address counts, failed ones too.
	if err := s.cfg.Limiter.allowIP(r); err != nil {
		s.countLimited(err)
		writeError(w, err)
		return nil, "", false
	}
	id, err := s.authenticate(r)
	if err != nil {
		writeError(w, err)
		return nil, "", false
	}
	if !s.originAllowed(r) {
		writeError(w, &apiError{status: http.StatusForbidden, code: codeForbidden, message: "origin not allowed"})
		return nil, "", false
	}
	if !isUpgrade(r) {
		// gws would answer in plain text; every refusal here is a JSON error.
		w.Header().Set("Upgrade", "websocket")
		writeError(w, &apiError{status: http.StatusUpgradeRequired, code: codeBadRequest, message: "this endpoint speaks WebSocket (version 13) only"})
		return nil, "", false
	}
	since = r.URL.Query().Get("since")
	if since != "" {
		if _, err := subscriptions.ParseStreamID(since); err != nil {
			writeError(w, errBadRequest(codeBadRequest, "since must be a message id <ms>-<seq>"))
			return nil, "", false
		}
	}
	if _, err := parseRoomSince(r.URL.Query().Get("room_since")); err != nil {
		writeError(w, errBadRequest(codeBadRequest, err.Error()))
		return nil, "", false
	}
	user := id.user
	if s.hub.LocalConnections(user) >= s.cfg.MaxConnsPerUser {
		writeError(w, &apiError{status: http.StatusTooManyRequests, code: codeRateLimited, message: "too many connections for this user"})
		return nil, "", false
	}
	// Last before the upgrade, so that only a connection that would open takes from the
	// user's budget (the IP's was taken first, above).
	if err := s.cfg.Limiter.allowUserConn(r.Context(), user); err != nil {
		s.countLimited(err)
		writeError(w, err)
		return nil, "", false
	}
	return id, since, true
}

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
