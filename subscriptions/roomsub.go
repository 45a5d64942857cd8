package subscriptions

import "slices"

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
	skipAfter StreamID // with skipTo, a small period whose turns rs missed (see applyMode)
	skipTo    StreamID
	inFlight  bool      // a read is queued or under way
	again     bool      // read again once the current page is delivered
	more      bool      // the stream may hold more after the page
	replay    []Message // the page read, not yet delivered
	pending   []Message // live messages that arrived while reading
	pendBytes int
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
	if last, ok := s.roomLast[room]; ok && pos.Less(last) {
		pos = last
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
		if rs.s.roomLast == nil {
			rs.s.roomLast = make(map[string]StreamID)
		}
		rs.s.roomLast[rs.room] = rs.last // a room started again never goes back before it
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
	if rs.s.repeatLocked(m) {
		return true
	}
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
			if rs.last.Less(m.ID) && !rs.skipped(m.ID) {
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
	if s.holder != rs || s.state == stateClosed {
		s.mu.Unlock()
		return
	}
	s.releaseHoldAndUnlock()
}

// releaseHoldAndUnlock ends a hold (s is syncing, its catch-up slot taken): s goes live
// with what was buffered, or, when a catch-up was asked for meanwhile (the Pub/Sub
// connection was rebuilt), catches up first, since what was buffered may lie after a gap.
func (s *Subscription) releaseHoldAndUnlock() {
	s.holder = nil
	if s.catchup {
		s.catchup = false // s stays syncing and queued: the catch-up delivers, then the buffer
		s.mu.Unlock()
		s.hub.catchups.push(s)
		return
	}
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

// applyMode reconciles rs with the room's mode read after a page, for when a control on the
// user's channel was lost with a Pub/Sub connection: a room that turned small is delivered
// up to its turn and then stops; entries of a small period that rs did not see (after a
// turn to small, up to the next turn to big) are skipped, since the members' own streams
// had them.
func (rs *roomSub) applyMode(m modeHash) {
	s := rs.s
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case !m.big:
		if !rs.finishing || m.until.Less(rs.until) {
			rs.finishing, rs.until = true, m.until
		}
	case rs.last.Less(m.from) && m.until.Less(m.from):
		rs.skipAfter, rs.skipTo = m.until, m.from
	}
}

// skipped reports whether id is in a small period rs missed the turns around.
func (rs *roomSub) skipped(id StreamID) bool {
	return rs.skipAfter.Less(id) && !rs.skipTo.Less(id)
}
