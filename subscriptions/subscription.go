package subscriptions

import (
	"context"
	"fmt"
	"sync"
)

// Sink is where a subscription's messages go: a client connection's outgoing queue.
//
// The hub calls a Sink holding no lock of its own but the subscription's (see the lock
// order in hub.go), so a Sink may call back into the hub: Subscribe, LocalConnections,
// another subscription's Close. Deliver must not call its own subscription's methods; Drop
// may.
type Sink interface {
	// Deliver queues msg for the client without blocking. It returns false when the client
	// cannot keep up; the hub then stops delivering and calls Drop. No Deliver runs once the
	// subscription's Close has returned.
	Deliver(msg Message) bool
	// Drop is called once when the hub gives up on the subscription (ErrSlowConsumer,
	// ErrLagged, or history that could not be read). The sink is expected to close its
	// connection so that the client reconnects and resumes from its last id.
	Drop(reason error)
}

// Welcome is what a new subscription knows once Redis has confirmed its channel.
type Welcome struct {
	// Recovered is set when since was given: true when the stream still held every message
	// after since (they are replayed by Start), false when some were trimmed away.
	Recovered *bool
	// Position is the id the connection starts after: since, or the newest message of the
	// stream when the subscription was confirmed. A client that sees no message resumes
	// from it.
	Position StreamID
}

// subState is where a subscription is in its life.
type subState uint8

const (
	stateSetup   subState = iota // confirmed or confirming, or replaying; live messages are buffered
	stateLive                    // messages go straight to the sink
	stateSyncing                 // catching up from the stream; live messages are buffered
	stateClosed
)

// Subscription is one connection's subscription to its user's channel. It guarantees the
// sink sees the user's messages in id order, each once, with no gap since its position:
// live messages are buffered whenever it reads the stream, and anything not newer than the
// last id delivered is dropped.
//
// A resume replays the stream a page at a time (see PacedSink): a page is read only once
// the previous one is in the sink, so that a connection's replay holds at most
// Config.ReplayBytes of the history however long it is and however slowly its client reads.
// Live messages that arrive meanwhile are buffered; when the buffer overflows it is
// forgotten and the replay reads on past it, since every live message is in the stream too.
type Subscription struct {
	hub  *Hub
	user string
	sink Sink
	// resumed says the connection gave since, which is resumeFrom: its big rooms without a
	// position of their own start from there (SubscribeRooms). Set before it is shared.
	resumed    bool
	resumeFrom StreamID
	link       *link    // the link carrying the user's channel; set by attach, then fixed
	ch         *channel // guarded by link.mu; nil once detached

	mu           sync.Mutex
	state        subState
	last         StreamID
	replay       []Message // the page read and not yet delivered
	replayFrom   StreamID  // the newest id read from the stream; the next page starts there
	replayDone   bool      // the stream held nothing after replayFrom when last read
	reading      bool      // a page read is queued or under way
	overflowed   bool      // pending was forgotten since the current read was asked for
	started      bool      // Start was called: the welcome is out
	pending      []Message // live messages that arrived while not live
	pendingBytes int
	catchup      bool // a catch-up is wanted once the current phase ends
	queued       bool // in the catch-up queue
	// rooms are the connection's big rooms (roomsub.go); roomOps the room controls that
	// wait for the connection to be live; holder the room, turning small, that holds it.
	rooms    map[string]*roomSub
	roomOps  []roomOp
	holder   *roomSub
	roomLast map[string]StreamID // the last id delivered of each big room stopped
	recent   *recentTokens       // the dedupe tokens last delivered (dedupe.go)
}

// Subscribe subscribes a new connection of user. It returns once Redis has confirmed the
// user's channel and, with since, the first page of the history after since has been read
// (it decides Welcome.Recovered); nothing reaches sink until Start is called, so that the
// caller can send its welcome first. since is "" for a connection that does not resume.
func (h *Hub) Subscribe(ctx context.Context, user, since string, sink Sink) (*Subscription, Welcome, error) {
	if !ValidID(user) {
		return nil, Welcome{}, ErrInvalidID
	}
	var from StreamID
	if since != "" {
		var err error
		if from, err = ParseStreamID(since); err != nil {
			return nil, Welcome{}, err
		}
	}
	if !h.running.Load() {
		return nil, Welcome{}, ErrClosed
	}
	s := &Subscription{hub: h, user: user, sink: sink, resumed: since != "", resumeFrom: from}
	ready := h.attach(user, s)
	select {
	case <-ready:
	case <-ctx.Done():
		s.Close()
		return nil, Welcome{}, fmt.Errorf("%w: subscription not confirmed: %w", ErrUnavailable, ctx.Err())
	case <-h.done:
		s.Close()
		return nil, Welcome{}, ErrClosed
	}
	var w Welcome
	s.mu.Lock()
	s.overflowed = false // what is forgotten before the read below is in what it reads
	s.mu.Unlock()
	if since == "" {
		top, err := h.newest(ctx, user)
		if err != nil {
			s.Close()
			return nil, Welcome{}, err
		}
		w.Position = top
		s.mu.Lock()
		s.last, s.replayFrom = top, top
		s.replayDone = !s.overflowed
		s.mu.Unlock()
		return s, w, nil
	}
	page, err := h.readPage(ctx, user, from)
	if err != nil {
		s.Close()
		return nil, Welcome{}, err
	}
	recovered, err := h.recoveredFrom(ctx, h.keys.userStream(user), from, page.entries)
	if err != nil {
		s.Close()
		return nil, Welcome{}, err
	}
	w.Recovered, w.Position = &recovered, from
	s.mu.Lock()
	s.last, s.replayFrom = from, from
	s.takePageLocked(page)
	s.mu.Unlock()
	return s, w, nil
}

// takePageLocked keeps the messages of a page read from replayFrom for delivery.
func (s *Subscription) takePageLocked(page replayPage) {
	n := 0
	for _, e := range page.entries {
		id, err := ParseStreamID(e.ID)
		if err != nil || !s.replayFrom.Less(id) {
			continue // the anchor, delivered already
		}
		s.replayFrom = id // past an entry that is not a message too, or it is read forever
		if m, ok := entryMessage(e); ok {
			s.replay = append(s.replay, m)
			n++
		}
	}
	s.hub.replayed.Add(int64(n))
	// Done when the stream held nothing more, and no live message was forgotten after the
	// read was asked for: one forgotten later may lie past what it saw.
	s.replayDone = !page.more && !s.overflowed
}

// PacedSink is a Sink that can say when it is full, so that a long replay is fed to it as
// it drains instead of overflowing it (a resume after 1,000 large messages would otherwise
// be dropped as a slow consumer, resume, and be dropped again), and so that the next page
// of the history is read only once the sink has taken the last.
type PacedSink interface {
	Sink
	// Room reports whether a message of n bytes fits now with at most limit bytes queued
	// (a message into an empty sink always fits). When it does not, the sink calls resume
	// once, later, when it has drained.
	Room(n, limit int, resume func()) bool
	// Replayed is called once when a subscription that was set up goes live: its replay,
	// if any, is over. It is not called for a subscription closed before that.
	Replayed()
}

// Start delivers the replayed history and the live messages buffered since the
// subscription was confirmed, then switches to live delivery.
func (s *Subscription) Start() {
	s.mu.Lock()
	if s.state != stateSetup || s.started {
		s.mu.Unlock()
		return
	}
	s.started = true
	s.replayAndUnlock()
}

// replayAndUnlock delivers what is left of the page, as far as a paced sink has room, asks
// for the next page once it is all delivered, and goes live once the stream has no more. It
// is called with s.mu held and releases it.
func (s *Subscription) replayAndUnlock() {
	paced, _ := s.sink.(PacedSink)
	for len(s.replay) > 0 {
		m := s.replay[0]
		if paced != nil && !paced.Room(len(m.Payload), s.hub.cfg.ReplayBytes/2, s.resumeReplay) {
			s.mu.Unlock() // resumeReplay continues; live messages wait in pending
			return
		}
		s.replay[0] = Message{} // the queue holds it now; the page must not
		s.replay = s.replay[1:]
		if !s.deliverLocked(m) {
			s.dropAndUnlock(ErrSlowConsumer)
			return
		}
	}
	s.replay = nil
	if !s.replayDone {
		if !s.reading {
			// Read off this goroutine: it may be the dispatcher's, a socket writer's or
			// the read loop's, none of which may wait on Redis.
			s.reading, s.overflowed = true, false
			s.mu.Unlock()
			s.hub.catchups.push(s)
			return
		}
		s.mu.Unlock() // the page under way continues
		return
	}
	s.goLiveAndUnlock(true)
}

// resumeReplay continues a paced replay once the sink has drained.
func (s *Subscription) resumeReplay() {
	s.mu.Lock()
	if s.state != stateSetup {
		s.mu.Unlock()
		return
	}
	s.replayAndUnlock()
}

// pageRead applies a page read for s from from by a catch-up worker: err is the read's
// error, kept whether the stream still held every message after from.
func (s *Subscription) pageRead(from StreamID, page replayPage, kept bool, err error) {
	s.mu.Lock()
	s.reading = false
	switch {
	case s.state != stateSetup:
		s.mu.Unlock() // closed meanwhile
	case err != nil:
		s.dropAndUnlock(err)
	case !kept || from != s.replayFrom:
		// Our position left the stream while the client was slow to take the replay:
		// messages after it were trimmed. Its client must resume to learn so.
		s.dropAndUnlock(ErrLagged)
	default:
		s.takePageLocked(page)
		s.replayAndUnlock()
	}
}

// goLiveAndUnlock delivers what was buffered and goes live, or drops the subscription when
// a delivery failed. It is called with s.mu held and releases it.
func (s *Subscription) goLiveAndUnlock(ok bool) {
	for i := 0; ok && i < len(s.pending); i++ {
		ok = s.deliverLocked(s.pending[i])
	}
	clear(s.pending)
	s.pending, s.pendingBytes = s.pending[:0], 0
	if !ok {
		s.dropAndUnlock(ErrSlowConsumer)
		return
	}
	wasSetup := s.state == stateSetup
	s.state = stateLive
	reads, detach := s.applyRoomOpsLocked()
	again := s.catchup
	s.catchup = false
	s.mu.Unlock()
	detachAll(detach)
	for _, rs := range reads {
		s.hub.roomReads.push(rs)
	}
	if paced, ok := s.sink.(PacedSink); ok && wasSetup {
		paced.Replayed()
	}
	if again {
		s.requestCatchup()
	}
}

// User returns the user the subscription belongs to.
func (s *Subscription) User() string { return s.user }

// Close releases the subscription; the node unsubscribes the channel when it was the user's
// last here. Once Close returns, the sink gets no more messages. Close is idempotent.
func (s *Subscription) Close() {
	s.mu.Lock()
	s.state = stateClosed
	s.replay, s.pending = nil, nil
	rooms := s.closeRoomsLocked()
	s.mu.Unlock()
	s.detach()
	detachAll(rooms)
}

// offer takes a live message from the dispatcher. It never blocks on the client.
func (s *Subscription) offer(m Message) {
	s.mu.Lock()
	switch s.state {
	case stateLive:
		if !s.deliverLocked(m) {
			s.dropAndUnlock(ErrSlowConsumer)
			return
		}
	case stateSetup:
		if len(s.pending) >= s.hub.cfg.MaxPending || s.pendingBytes+len(m.Payload) > s.hub.cfg.ReplayBytes/2 {
			// m and everything buffered are in the stream already (appended before they
			// were published): forget them, and the replay reads on past them instead of
			// holding them in memory or dropping a client that is merely slow.
			clear(s.pending)
			s.pending, s.pendingBytes = s.pending[:0], 0
			s.overflowed, s.replayDone = true, false
			s.mu.Unlock()
			return
		}
		s.pending = append(s.pending, m)
		s.pendingBytes += len(m.Payload)
	case stateSyncing:
		if len(s.pending) >= s.hub.cfg.MaxPending {
			s.dropAndUnlock(ErrSlowConsumer)
			return
		}
		s.pending = append(s.pending, m)
	}
	s.mu.Unlock()
}

// deliverLocked hands m to the sink unless it is not newer than the last id delivered.
func (s *Subscription) deliverLocked(m Message) bool {
	if !s.last.Less(m.ID) {
		return true
	}
	s.last = m.ID
	if s.repeatLocked(m) {
		return true
	}
	return s.sink.Deliver(m)
}

// repeatLocked reports whether m repeats a send delivered before under another id: a retry
// stored again after a failover lost the first (dedupe.go).
func (s *Subscription) repeatLocked(m Message) bool {
	if m.Dedupe == 0 {
		return false
	}
	if s.recent == nil {
		s.recent = new(recentTokens)
	}
	return s.recent.repeat(m.Dedupe)
}

// dropAndUnlock closes the subscription for reason and tells the sink. It is called with
// s.mu held and releases it before calling the sink.
func (s *Subscription) dropAndUnlock(reason error) {
	if s.state == stateClosed {
		s.mu.Unlock()
		return
	}
	s.state = stateClosed
	s.replay, s.pending = nil, nil
	rooms := s.closeRoomsLocked()
	s.mu.Unlock()
	detachAll(rooms)
	s.sink.Drop(reason)
}

// requestCatchup asks for the subscription to be caught up from its stream, because
// something may have been published while the node's Pub/Sub connection was down.
func (s *Subscription) requestCatchup() {
	s.mu.Lock()
	switch {
	case s.state == stateClosed:
	case s.state == stateLive && !s.queued:
		s.state = stateSyncing
		s.queued = true
		s.mu.Unlock()
		s.hub.catchups.push(s)
		return
	default:
		// Setting up, or a catch-up is under way whose read may predate the gap: run
		// another one when it is done.
		s.catchup = true
	}
	s.mu.Unlock()
}
