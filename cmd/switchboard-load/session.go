package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/switchboard-dev/switchboard/internal/wsclient"
)

// streamID is a message id, "<ms>-<seq>", parsed so that ids compare as the server orders
// them and fit in a map key without a string.
type streamID struct{ ms, seq uint64 }

// parseStreamID parses "<ms>-<seq>".
func parseStreamID(s string) (streamID, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == '-' {
			ms, err1 := strconv.ParseUint(s[:i], 10, 64)
			seq, err2 := strconv.ParseUint(s[i+1:], 10, 64)
			return streamID{ms, seq}, err1 == nil && err2 == nil
		}
	}
	return streamID{}, false
}

func (a streamID) after(b streamID) bool { return a.ms > b.ms || (a.ms == b.ms && a.seq > b.seq) }

func (a streamID) String() string {
	return strconv.FormatUint(a.ms, 10) + "-" + strconv.FormatUint(a.seq, 10)
}

// delivery is one message frame, as the scenarios see it. room is borrowed from the frame
// (see run): valid only during the call that takes the delivery.
type delivery struct {
	id      streamID
	at      int64  // arrival, unix nanoseconds
	sent    int64  // the payload's send timestamp, unix nanoseconds; 0 if it had none
	seq     int64  // the payload's sequence number; -1 if it had none
	inOrder bool   // id is above every id this user received before
	room    string // the room of a room message; "" for a direct message
	big     bool   // a big room's message, fanned out on read
}

// sessionStats counts what happened to the connections during a run, beyond messages.
type sessionStats struct {
	closes         tally // connections the server ended, by close code
	resumeFailures tally // failed reconnections, by error class
	frames         tally // frames other than messages, by type
	resumes        atomic.Int64
	notRecovered   atomic.Int64 // resumes whose welcome said history was trimmed
	badFrames      atomic.Int64 // message frames without a valid id
}

func (s *sessionStats) report() *SessionReport {
	r := &SessionReport{
		Closes:         s.closes.snapshot(),
		Resumes:        s.resumes.Load(),
		NotRecovered:   s.notRecovered.Load(),
		ResumeFailures: s.resumeFailures.snapshot(),
		OtherFrames:    s.frames.snapshot(),
		BadFrames:      s.badFrames.Load(),
	}
	if r.Closes == nil && r.ResumeFailures == nil && r.OtherFrames == nil && r.Resumes == 0 && r.BadFrames == 0 {
		return nil
	}
	return r
}

// session is one user's connection over a run. Like a real client, when the server closes
// it (1013 slow consumer, 1012 restart) it reconnects and resumes after the last message it
// saw, so that "lost" means what docs/protocol.md's delivery guarantee means: a message the server accepted and
// never delivered, even to a client that did what it was told.
type session struct {
	user string
	node int
	conn *wsclient.Conn // owned by run once it starts
	// live is conn for other goroutines, which send on it (dm --via ws); nil while the
	// session reconnects.
	live atomic.Pointer[wsclient.Conn]
	last string // the highest message id seen, to resume after
	max  streamID
	// rooms are the big rooms' positions: their messages carry ids of the room's stream,
	// resumed with room_since, and ordered apart from the user's. Pointers, so that a
	// position moves without storing the frame's (borrowed) room name as the key again.
	rooms map[string]*streamID
	// leaving marks a close the scenario asked for (disconnect), not the server's.
	leaving atomic.Bool
}

// sessionOptions are what every session of a run shares.
type sessionOptions struct {
	nodes   *nodes
	buffer  int
	timeout time.Duration
	stats   *sessionStats
	// onReply, if set, takes the ack and error frames that answer the session's own sends.
	onReply func(wsclient.Frame)
	// offline is the longest a session closed by disconnect stays away before it resumes
	// (a random time up to it), so that messages sent meanwhile must come from the stream.
	offline time.Duration
}

// newSession wraps a connection that has received its welcome.
func newSession(user string, node int, c *wsclient.Conn, welcome wsclient.Frame) *session {
	s := &session{user: user, node: node, conn: c}
	s.live.Store(c)
	// A client that has seen nothing resumes from the stream position the welcome gave it,
	// so that messages sent while it reconnects are replayed, not missed.
	if id, ok := parseStreamID(welcome.LastID); ok {
		s.last, s.max = welcome.LastID, id
	}
	s.welcomeRooms(welcome)
	return s
}

// welcomeRooms takes the big rooms' positions a welcome gives.
func (s *session) welcomeRooms(w wsclient.Frame) {
	for _, b := range w.BigRooms {
		if id, ok := parseStreamID(b.LastID); ok {
			s.setRoom(b.Room, id)
		}
	}
}

// setRoom moves room's position to id; room may be borrowed from a frame.
func (s *session) setRoom(room string, id streamID) {
	if p := s.rooms[room]; p != nil {
		*p = id
		return
	}
	if s.rooms == nil {
		s.rooms = make(map[string]*streamID)
	}
	s.rooms[strings.Clone(room)] = &id
}

// roomPos is room's position; zero if none is held.
func (s *session) roomPos(room string) streamID {
	if p := s.rooms[room]; p != nil {
		return *p
	}
	return streamID{}
}

// roomSince is the room_since parameter of the positions held.
func (s *session) roomSince() string {
	var b strings.Builder
	for room, id := range s.rooms {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s:%d-%d", room, id.ms, id.seq)
	}
	return b.String()
}

// run takes the connection's frames until ctx ends, handing each message to handle in
// arrival order. The frames are handled on the connection's read goroutine, borrowed from
// its read buffer (a goroutine switch and a copy per frame saved, the tool's receive path
// being what limits it), so what outlives a frame is cloned; run itself waits for the
// connection to end and resumes it, so handle never runs for two connections at once, nor
// after run returns.
func (s *session) run(ctx context.Context, o sessionOptions, handle func(delivery)) {
	defer func() {
		if s.conn != nil {
			s.conn.Handle(nil)
			s.conn.Close()
		}
	}()
	onFrame := func(f wsclient.Frame) { s.frame(f, o, handle) }
	for {
		s.conn.HandleBorrowed(onFrame)
		select {
		case <-ctx.Done():
			return
		case <-s.conn.Done():
		}
		if ctx.Err() != nil {
			return
		}
		// Done: every frame has been handled.
		code, _ := s.conn.CloseCode()
		s.live.Store(nil)
		s.conn.Abort()
		s.conn = nil
		if s.leaving.Swap(false) {
			// The scenario closed it (disconnect): a user leaving, not a server close.
			if !s.stayAway(ctx, o.offline) || !s.resume(ctx, o) {
				return
			}
			continue
		}
		o.stats.closes.add(closeKey(code))
		if code == 4001 || code == 1008 {
			return // the server said not to come back
		}
		if !s.resume(ctx, o) {
			return
		}
	}
}

// frame takes one frame of the session's connection, borrowed: what it keeps, it clones.
func (s *session) frame(f wsclient.Frame, o sessionOptions, handle func(delivery)) {
	if o.onReply != nil && f.Ref != "" && (f.Type == "ack" || f.Type == "error") {
		// A frame with a ref never takes FastMessages's path: json.Unmarshal copied its
		// strings and Data; Raw is the read buffer.
		f.Raw = bytes.Clone(f.Raw)
		o.onReply(f)
		return
	}
	if f.Type == "room_mode" {
		if id, ok := parseStreamID(f.LastID); ok && f.Big {
			s.setRoom(f.Room, id)
		} else if !f.Big {
			delete(s.rooms, f.Room)
		}
		return
	}
	if f.Type != "message" {
		o.stats.frames.add(strings.Clone(f.Type))
		return
	}
	d := delivery{at: time.Now().UnixNano(), seq: -1}
	id, ok := parseStreamID(f.ID)
	if !ok {
		o.stats.badFrames.Add(1)
		return
	}
	d.id, d.room, d.big = id, f.Room, f.Big
	d.sent, d.seq, _ = parsePayload(f.Data)
	if f.Big {
		if d.inOrder = id.after(s.roomPos(f.Room)); d.inOrder {
			s.setRoom(f.Room, id)
		}
	} else if d.inOrder = id.after(s.max); d.inOrder {
		s.max, s.last = id, strings.Clone(f.ID)
	}
	if f.To != "" {
		// The copy of a DM this user sent, kept in its own stream: it moves the resume
		// position, but it is not a delivery of what the scenario sent to this user
		// (nor anything unusual to report).
		return
	}
	handle(d)
}

// disconnect closes the session's connection as a user leaving would; the session stays
// away up to its offline time, then resumes after the last message it saw. It reports
// false when the session had no connection (it is reconnecting already).
func (s *session) disconnect() bool {
	c := s.live.Swap(nil)
	if c == nil {
		return false
	}
	s.leaving.Store(true)
	c.Close()
	return true
}

// stayAway waits a random time up to d, and reports false if ctx ended first.
func (s *session) stayAway(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(rand.N(d))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// resume reconnects with backoff until it is welcomed again or ctx ends.
func (s *session) resume(ctx context.Context, o sessionOptions) bool {
	backoff := 10 * time.Millisecond
	for ctx.Err() == nil {
		c, w, err := o.nodes.dialRooms(s.node, s.user, s.last, s.roomSince(), o.buffer, o.timeout)
		if err == nil {
			s.welcomeRooms(w)
			o.stats.resumes.Add(1)
			if w.Recovered != nil && !*w.Recovered {
				o.stats.notRecovered.Add(1)
			}
			s.conn = c
			s.live.Store(c)
			return true
		}
		o.stats.resumeFailures.add(errorClass(err))
		select {
		case <-ctx.Done():
		case <-time.After(backoff/2 + rand.N(backoff/2+1)):
		}
		backoff = min(2*backoff, 500*time.Millisecond)
	}
	return false
}

// closeKey names a close code for counting; 0 means the connection dropped without one.
func closeKey(code uint16) string {
	switch code {
	case 0:
		return "dropped (no close frame)"
	case 1012:
		return "1012 (node restarting)"
	case 1013:
		return "1013 (slow consumer or Redis unavailable)"
	case 4001:
		return "4001 (disconnected by the API)"
	}
	return strconv.Itoa(int(code))
}
