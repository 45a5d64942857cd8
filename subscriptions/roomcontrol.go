package subscriptions

import (
	"context"
	"fmt"
	"time"
)

// This file holds what arrives about big rooms on a user's channel (controls: a room
// turned big or small, the user joined or left a big room) and how a new connection starts
// its big rooms (docs/design.md, "Big rooms: fan-out on read").

// roomOp is a room control deferred until the connection is live: what came before it on
// the user's channel must be delivered first.
type roomOp struct {
	mode string // "big", "join", "small" or "leave"
	room string
	pos  StreamID
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
		s.sink.Deliver(Message{Payload: roomModeFrame(op.room, true, rs.last)})
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
				s.roomOps = append(s.roomOps, op)
				s.releaseHoldAndUnlock()
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
// positions given (a client's room_since) or from each room's newest message. A resume
// (s was given since) that names no position for a big room starts it where it turned big,
// or at since if that is later: its client kept no position because it never knew the room
// was big, so it was away when the room turned, and what the room sent since is in none of
// the user's streams. It returns
// once the room channels are confirmed; nothing reaches the sink before s.Start, and the
// rooms start after s's replay. What turns big or small meanwhile arrives as controls.
func (h *Hub) SubscribeRooms(ctx context.Context, s *Subscription, rooms []string, positions map[string]StreamID) ([]BigRoom, error) {
	if len(rooms) == 0 {
		return nil, nil
	}
	var resumeFrom *StreamID
	if s.resumed {
		resumeFrom = &s.resumeFrom
	}
	modes, err := h.readRoomModes(ctx, rooms, positions, resumeFrom)
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
		if rs := s.addRoomLocked(m.room, m.start, m.anchor); rs != nil && !rs.confirmed {
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

// linkForRoom returns the link that carries room's channel: the one link on a single
// Redis; on a cluster, the room's own (a cluster link holds one slot, and a room's keys are
// in the room's slot), created and started if needed.
func (h *Hub) linkForRoom(room string) *link {
	if !h.cluster {
		return h.link(-1)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if l := h.roomLinks[room]; l != nil {
		return l
	}
	l := h.newLink(-2)
	l.sentinel = h.keys.roomTag(room) + ":node:" + h.cfg.Node
	if h.roomLinks == nil {
		h.roomLinks = make(map[string]*link)
	}
	h.roomLinks[room] = l
	h.unstarted = append(h.unstarted, l)
	select {
	case h.linkAdded <- struct{}{}:
	default:
	}
	return l
}

// resyncRooms runs after user channels were subscribed again on a new Pub/Sub connection:
// the room controls published while the old one was down are lost (they are not stored).
// It reads each user's rooms and their modes, and starts the big rooms a lost control (a
// turn to big, a join) would have started, from where the room turned big or from the last
// id the connection delivered of it, whichever is later. The big rooms being delivered
// catch up from their streams, where membership and the mode are read again (applyMode),
// which stops a room that turned small or that the user left meanwhile.
func (h *Hub) resyncRooms(ctx context.Context, subs []*Subscription) {
	for _, s := range subs {
		rooms, err := h.roomSet(ctx, h.keys.userRooms(s.user))
		var modes []roomMode
		if err == nil {
			modes, err = h.readRoomModes(ctx, rooms, nil, nil)
		}
		if err != nil {
			if ctx.Err() == nil {
				h.log.Warn("resyncing big rooms after a Pub/Sub reconnect failed; they resync when the client reconnects", "user", s.user, "err", err)
			}
			continue
		}
		for _, m := range modes {
			if m.big {
				s.roomControl(roomOp{mode: "big", room: m.room, pos: m.from})
			}
		}
		s.mu.Lock()
		var reads []*roomSub
		for _, rs := range s.rooms {
			if rs.requestReadLocked() {
				reads = append(reads, rs)
			}
		}
		s.mu.Unlock()
		for _, rs := range reads {
			h.roomReads.push(rs)
		}
	}
}
