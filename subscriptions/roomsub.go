package subscriptions

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// This file is the receiving side of big rooms (docs/design.md, "On a node"): a
// connection's big rooms, each a roomSub of its Subscription, guarded by the
// subscription's lock so that everything delivered to one connection stays one ordered
// sequence under one lock.

// rsState is where a roomSub is.
type rsState uint8

const (
	rsWaiting rsState = iota // created; reads once its channel is confirmed and its connection live
	rsReading                // reading the room's stream; live messages are buffered
	rsLive                   // live messages go to the sink
	rsClosed
)

// roomSub is one connection's delivery of one big room. Its fields after ch are guarded by
// s.mu; ch by its link's mu.
type roomSub struct {
	s    *Subscription
	room string
	link *link
	ch   *channel

	state     rsState
	confirmed bool     // the room channel was confirmed since the roomSub attached
	last      StreamID // the newest room id delivered (or the position it starts after)
	readFrom  StreamID // where the next read starts, inclusive
	anchor    bool     // the next read must find readFrom, or messages were trimmed
	finishing bool     // the room turned small: deliver up to until, then stop
	until     StreamID
	inFlight  bool      // a read is queued or under way
	again     bool      // read again once the current page is delivered
	more      bool      // the stream may hold more after the page
	replay    []Message // the page read, not yet delivered
	pending   []Message // live messages that arrived while reading
	pendBytes int
}

// roomOp is a room control deferred until the connection is live: what came before it on
// the user's channel must be delivered first.
type roomOp struct {
	mode string // "big", "join", "small" or "leave"
	room string
	pos  StreamID
}

// BigRoom is where a connection starts delivering one of its user's big rooms.
type BigRoom struct {
	Room string `json:"room"`
	// LastID is the room id the connection starts after: the client's position, or the
	// room's newest message.
	LastID string `json:"last_id"`
	// Recovered is set when the client gave a position: false when messages after it were
	// trimmed from the room's stream.
	Recovered *bool `json:"recovered,omitempty"`
}

// addRoomLocked creates s's roomSub of room starting after pos, unless it has one, and
// attaches it to the room's channel. It returns the new roomSub, or nil.
func (s *Subscription) addRoomLocked(room string, pos StreamID, anchor bool) *roomSub {
	if s.state == stateClosed || s.rooms[room] != nil {
		return nil
	}
	rs := &roomSub{s: s, room: room, last: pos, readFrom: pos, anchor: anchor && !pos.IsZero()}
	if s.rooms == nil {
		s.rooms = make(map[string]*roomSub)
	}
	s.rooms[room] = rs
	rs.confirmed = s.hub.attachRoom(rs)
	return rs
}

// attachRoom registers rs on its room's channel; it reports whether the channel is live
// already (otherwise its confirmation calls channelLive).
func (h *Hub) attachRoom(rs *roomSub) bool {
	name := h.keys.roomChannel(rs.room)
	l := h.linkForRoom(rs.room)
	rs.link = l
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.channels[name]
	if c == nil {
		c = newChannel(name, "", l)
		l.channels[name] = c
	}
	c.rsubs = append(c.rsubs, rs)
	rs.ch = c
	if len(c.rsubs) == 1 && len(c.subs) == 0 {
		l.markDirtyLocked(c)
		l.wakeFlusher()
	}
	return c.state == chanLive
}

// detach removes rs from its channel; the node unsubscribes the channel with its last one.
func (rs *roomSub) detach() {
	l := rs.link
	l.mu.Lock()
	defer l.mu.Unlock()
	c := rs.ch
	if c == nil {
		return
	}
	rs.ch = nil
	if i := slices.Index(c.rsubs, rs); i >= 0 {
		c.rsubs = slices.Delete(c.rsubs, i, i+1)
	}
	if len(c.rsubs) == 0 && len(c.subs) == 0 {
		c.rsubs = nil
		l.markDirtyLocked(c)
		l.wakeFlusher()
	}
}

// closeLocked stops rs; the caller detaches it after releasing s.mu.
func (rs *roomSub) closeLocked() {
	rs.state = rsClosed
	rs.replay, rs.pending = nil, nil
	if rs.s.rooms[rs.room] == rs {
		delete(rs.s.rooms, rs.room)
	}
}

// closeRoomsLocked stops every roomSub of s and returns them to detach.
func (s *Subscription) closeRoomsLocked() []*roomSub {
	var out []*roomSub
	for _, rs := range s.rooms {
		out = append(out, rs)
	}
	for _, rs := range out {
		rs.closeLocked()
	}
	return out
}

func detachAll(rooms []*roomSub) {
	for _, rs := range rooms {
		rs.detach()
	}
}

// parentLive reports whether s has gone live once: its replay is over, so a room may be
// delivered (a catch-up of the user's stream does not hold the rooms).
func (s *Subscription) parentLive() bool { return s.state == stateLive || s.state == stateSyncing }

// channelLive is called by the reader when rs's channel is confirmed: first subscribed, or
// subscribed again on a new connection, when what was published meanwhile is only in the
// stream.
func (rs *roomSub) channelLive() {
	s := rs.s
	s.mu.Lock()
	rs.confirmed = true
	push := rs.requestReadLocked()
	s.mu.Unlock()
	if push {
		s.hub.roomReads.push(rs)
	}
}

// requestReadLocked asks for a read of the room's stream from the last id delivered (a
// start or a catch-up). It reports whether the caller must queue the read.
func (rs *roomSub) requestReadLocked() bool {
	switch {
	case rs.state == rsClosed || rs.s.state == stateClosed:
		return false
	case !rs.confirmed || !rs.s.parentLive():
		return false // started by channelLive or startRoomsLocked
	case rs.state == rsReading:
		rs.again = true // the read under way may predate what was missed
		return false
	}
	rs.state, rs.readFrom, rs.inFlight = rsReading, rs.last, true
	return true
}

// offer takes a live message of rs's room from the dispatcher.
func (rs *roomSub) offer(m Message) {
	s := rs.s
	s.mu.Lock()
	switch {
	case rs.state == rsLive && s.parentLive():
		if !rs.deliverLocked(m) {
			s.dropAndUnlock(ErrSlowConsumer)
			return
		}
	case rs.state == rsReading:
		if len(rs.pending) >= s.hub.cfg.MaxPending || rs.pendBytes+len(m.Payload) > s.hub.cfg.ReplayBytes/2 {
			// Everything buffered is in the stream: forget it and read on past it.
			clear(rs.pending)
			rs.pending, rs.pendBytes, rs.again = rs.pending[:0], 0, true
			break
		}
		rs.pending = append(rs.pending, m)
		rs.pendBytes += len(m.Payload)
	}
	// Waiting: the first read, asked for later, finds m in the stream.
	s.mu.Unlock()
}

// offerEphemeral hands an ephemeral message of the room to a live roomSub.
func (rs *roomSub) offerEphemeral(m Message) {
	s := rs.s
	s.mu.Lock()
	if rs.state == rsLive && s.state == stateLive && !s.sink.Deliver(m) {
		s.dropAndUnlock(ErrSlowConsumer)
		return
	}
	s.mu.Unlock()
}

// deliverLocked hands m to the sink unless it is not newer than the last room id delivered
// (or, finishing, newer than until).
func (rs *roomSub) deliverLocked(m Message) bool {
	if !rs.last.Less(m.ID) || (rs.finishing && rs.until.Less(m.ID)) {
		return true
	}
	rs.last = m.ID
	return rs.s.sink.Deliver(m)
}

// pageRead applies a page of the room's stream read from from.
func (rs *roomSub) pageRead(from StreamID, msgs []Message, more, notMember bool, err error) {
	s := rs.s
	s.mu.Lock()
	rs.inFlight = false
	switch {
	case rs.state != rsReading || s.state == stateClosed:
		s.mu.Unlock()
	case err != nil:
		s.dropAndUnlock(err)
	case notMember:
		// A control that came out of order (a grow after a leave): the user is not in
		// the room, and gets nothing of it.
		rs.closeLocked()
		rs.finishAndUnlock()
		rs.detach()
	case rs.anchor && !from.IsZero() && len(msgs) > 0 && msgs[0].ID != from:
		s.dropAndUnlock(ErrLagged) // its client resumes and learns recovered:false
	default:
		rs.anchor = true
		rs.more = more
		for _, m := range msgs {
			rs.readFrom = m.ID
			if rs.last.Less(m.ID) {
				rs.replay = append(rs.replay, m)
			}
		}
		rs.pumpAndUnlock()
	}
}

// pumpAndUnlock delivers the page as far as the sink has room, then reads on, goes live,
// or, finishing, stops. It is called with s.mu held and releases it.
func (rs *roomSub) pumpAndUnlock() {
	s := rs.s
	paced, _ := s.sink.(PacedSink)
	for len(rs.replay) > 0 {
		m := rs.replay[0]
		if paced != nil && !paced.Room(len(m.Payload), s.hub.cfg.ReplayBytes/2, s.resumeRooms) {
			s.mu.Unlock() // resumeRooms continues
			return
		}
		rs.replay[0] = Message{}
		rs.replay = rs.replay[1:]
		if !rs.deliverLocked(m) {
			s.dropAndUnlock(ErrSlowConsumer)
			return
		}
	}
	rs.replay = nil
	if rs.more || rs.again {
		if !rs.more {
			rs.readFrom = rs.last
		}
		rs.more, rs.again, rs.inFlight = false, false, true
		s.mu.Unlock()
		s.hub.roomReads.push(rs)
		return
	}
	ok := true
	for i := 0; ok && i < len(rs.pending); i++ {
		ok = rs.deliverLocked(rs.pending[i])
	}
	clear(rs.pending)
	rs.pending, rs.pendBytes = rs.pending[:0], 0
	if !ok {
		s.dropAndUnlock(ErrSlowConsumer)
		return
	}
	if !rs.finishing {
		rs.state = rsLive
		s.mu.Unlock()
		return
	}
	// Everything up to the turn is delivered: the room's next messages come on the user's
	// channel, held meanwhile.
	rs.closeLocked()
	s.sink.Deliver(Message{Payload: roomModeFrame(rs.room, false, StreamID{})})
	rs.finishAndUnlock()
	rs.detach()
}

// finishAndUnlock releases the connection a finishing roomSub held (see shrinkLocked).
func (rs *roomSub) finishAndUnlock() {
	s := rs.s
	if s.holder != rs {
		s.mu.Unlock()
		return
	}
	s.holder = nil
	s.queued = false
	s.goLiveAndUnlock(true)
}

// resumeRooms continues the paced room replays of s once its sink has drained.
func (s *Subscription) resumeRooms() {
	s.mu.Lock()
	for _, rs := range s.rooms {
		if rs.state == rsReading && len(rs.replay) > 0 && !rs.inFlight {
			rs.pumpAndUnlock()
			s.mu.Lock()
		}
	}
	s.mu.Unlock()
}

// applyRoomOpsLocked carries out the room controls deferred while s was not live, in order,
// and starts the roomSubs waiting for it. It stops at a shrink, which holds s again; the
// rest run when that one is done. It returns the roomSubs whose reads to queue.
func (s *Subscription) applyRoomOpsLocked() (reads []*roomSub, detach []*roomSub) {
	for len(s.roomOps) > 0 && s.state == stateLive {
		op := s.roomOps[0]
		s.roomOps = s.roomOps[1:]
		r, d := s.roomOpLocked(op)
		reads, detach = append(reads, r...), append(detach, d...)
	}
	if s.state == stateLive || s.state == stateSyncing {
		for _, rs := range s.rooms {
			if rs.state == rsWaiting && rs.requestReadLocked() {
				reads = append(reads, rs)
			}
		}
	}
	return reads, detach
}

// roomOpLocked carries out one room control on live s.
func (s *Subscription) roomOpLocked(op roomOp) (reads []*roomSub, detach []*roomSub) {
	switch op.mode {
	case "big", "join":
		rs := s.addRoomLocked(op.room, op.pos, true)
		if rs == nil {
			return nil, nil
		}
		s.sink.Deliver(Message{Payload: roomModeFrame(op.room, true, op.pos)})
		if rs.requestReadLocked() {
			reads = append(reads, rs)
		}
	case "leave":
		if rs := s.rooms[op.room]; rs != nil {
			rs.closeLocked()
			detach = append(detach, rs)
		}
	case "small":
		rs := s.rooms[op.room]
		if rs == nil {
			return nil, nil
		}
		// Hold the user's messages (the room's next ones among them) until the room is
		// delivered up to the turn.
		rs.finishing, rs.until = true, op.pos
		s.state, s.queued, s.holder = stateSyncing, true, rs
		rs.confirmed = true // read the stream whether or not the channel is live
		if rs.state != rsReading {
			rs.state = rsWaiting
			if rs.requestReadLocked() {
				reads = append(reads, rs)
			}
		} else {
			rs.again = true
		}
	}
	return reads, detach
}

// roomControl handles a room control that arrived on a user channel of the link: it acts on
// each local connection of the user, on the reader, so that it is ordered with the user's
// messages. A leave is answered once the user's connections stopped delivering the room.
func (l *link) roomControl(ctx context.Context, m *roomModeControl, channel string) {
	pos, _ := ParseStreamID(m.Pos)
	for _, s := range l.subscribers(channel) {
		s.roomControl(roomOp{mode: m.Mode, room: m.Room, pos: pos})
	}
	if m.Mode == "leave" && m.Reply != "" {
		h := l.hub
		l.tasks.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, kickReplyTimeout)
			defer cancel()
			if err := h.rdb.RPush(ctx, m.Reply, 1).Err(); err == nil {
				h.rdb.Expire(ctx, m.Reply, time.Minute)
			}
		})
	}
}

// roomControl applies op to s now when s is live, or once it is; a leave stops the room at
// once in any case.
func (s *Subscription) roomControl(op roomOp) {
	s.mu.Lock()
	if s.state == stateClosed {
		s.mu.Unlock()
		return
	}
	var detach []*roomSub
	if op.mode == "leave" {
		if rs := s.rooms[op.room]; rs != nil {
			rs.closeLocked()
			detach = append(detach, rs)
			if s.holder == rs {
				s.holder = nil
				s.queued = false
				s.roomOps = append(s.roomOps, op)
				s.goLiveAndUnlock(true)
				detachAll(detach)
				return
			}
		}
	}
	s.roomOps = append(s.roomOps, op)
	var reads []*roomSub
	if s.state == stateLive {
		var d []*roomSub
		reads, d = s.applyRoomOpsLocked()
		detach = append(detach, d...)
	}
	s.mu.Unlock()
	detachAll(detach)
	for _, rs := range reads {
		s.hub.roomReads.push(rs)
	}
}

// SubscribeRooms starts delivering the big rooms among rooms (the user's) to s, from the
// positions given (a client's room_since) or from each room's newest message. It returns
// once the room channels are confirmed; nothing reaches the sink before s.Start, and the
// rooms start after s's replay. What turns big or small meanwhile arrives as controls.
func (h *Hub) SubscribeRooms(ctx context.Context, s *Subscription, rooms []string, positions map[string]StreamID) ([]BigRoom, error) {
	if len(rooms) == 0 {
		return nil, nil
	}
	modes, err := h.readRoomModes(ctx, rooms, positions)
	if err != nil {
		return nil, err
	}
	var out []BigRoom
	var waits []<-chan struct{}
	s.mu.Lock()
	for _, m := range modes {
		if !m.big {
			continue
		}
		br := BigRoom{Room: m.room, LastID: m.start.String()}
		if m.given {
			br.Recovered = &m.recovered
		}
		out = append(out, br)
		if rs := s.addRoomLocked(m.room, m.start, !m.given || m.recovered); rs != nil && !rs.confirmed {
			waits = append(waits, h.roomReady(rs))
		}
	}
	s.mu.Unlock()
	for _, w := range waits {
		select {
		case <-w:
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: room subscription not confirmed: %w", ErrUnavailable, ctx.Err())
		case <-h.done:
			return nil, ErrClosed
		}
	}
	return out, nil
}

// roomReady returns the channel closed once rs's room channel is live.
func (h *Hub) roomReady(rs *roomSub) <-chan struct{} {
	l := rs.link
	l.mu.Lock()
	defer l.mu.Unlock()
	if rs.ch == nil {
		c := make(chan struct{})
		close(c)
		return c
	}
	return rs.ch.readyCh
}
