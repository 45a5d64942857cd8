package subscriptions

import (
	"context"
	"fmt"
	"sync"
)

// Sink is where a subscription's messages go: a client connection's outgoing queue.
type Sink interface {
	// Deliver queues msg for the client without blocking. It returns false when the client
	// cannot keep up; the hub then stops delivering and calls Drop.
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
	stateSetup   subState = iota // confirmed or confirming; live messages are buffered
	stateLive                    // messages go straight to the sink
	stateSyncing                 // catching up from the stream; live messages are buffered
	stateClosed
)

// Subscription is one connection's subscription to its user's channel. It guarantees the
// sink sees the user's messages in id order, each once, with no gap since its position:
// live messages are buffered whenever it reads the stream, and anything not newer than the
// last id delivered is dropped.
type Subscription struct {
	hub  *Hub
	user string
	sink Sink
	ch   *channel // guarded by hub.mu; nil once detached

	mu      sync.Mutex
	state   subState
	last    StreamID
	replay  []Message // read at setup, delivered by Start
	pending []Message // live messages that arrived while not live
	catchup bool      // a catch-up is wanted once the current phase ends
	queued  bool      // in the catch-up queue
}

// Subscribe subscribes a new connection of user. It returns once Redis has confirmed the
// user's channel and, with since, the history after since has been read; nothing reaches
// sink until Start is called, so that the caller can send its welcome first. since is ""
// for a connection that does not resume.
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
	s := &Subscription{hub: h, user: user, sink: sink}
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
	var replay []Message
	if since != "" {
		msgs, recovered, err := h.readAfter(ctx, user, from, int(h.cfg.HistorySize)+1000)
		if err != nil {
			s.Close()
			return nil, Welcome{}, err
		}
		replay, w.Recovered, w.Position = msgs, &recovered, from
		h.replayed.Add(int64(len(msgs)))
	} else {
		top, err := h.newest(ctx, user)
		if err != nil {
			s.Close()
			return nil, Welcome{}, err
		}
		w.Position = top
	}
	s.mu.Lock()
	s.last, s.replay = w.Position, replay
	s.mu.Unlock()
	return s, w, nil
}

// attach registers s on user's channel and returns a channel closed once Redis has
// confirmed the subscription.
func (h *Hub) attach(user string, s *Subscription) <-chan struct{} {
	name := h.keys.userChannel(user)
	h.mu.Lock()
	defer h.mu.Unlock()
	l := h.linkFor(user)
	c := l.channels[name]
	if c == nil {
		c = &channel{name: name, user: user, link: l, readyCh: make(chan struct{})}
		l.channels[name] = c
	}
	c.subs = append(c.subs, s)
	s.ch = c
	h.conns++
	if len(c.subs) == 1 {
		l.markDirty(c)
		l.wakeFlusher()
	}
	return c.readyCh
}

// PacedSink is a Sink that can say when it is full, so that a long replay is fed to it as
// it drains instead of overflowing it (a resume after 1,000 large messages would otherwise
// be dropped as a slow consumer, resume, and be dropped again).
type PacedSink interface {
	Sink
	// Room reports whether a message of n bytes fits now without filling the sink. When it
	// does not, the sink calls resume once, later, when it has drained.
	Room(n int, resume func()) bool
}

// Start delivers the replayed history and the live messages buffered since the
// subscription was confirmed, then switches to live delivery.
func (s *Subscription) Start() {
	s.mu.Lock()
	if s.state != stateSetup {
		s.mu.Unlock()
		return
	}
	s.replayLocked()
}

// replayLocked delivers what is left of the replay, as far as a paced sink has room, and
// goes live once it is all delivered. It unlocks s.mu.
func (s *Subscription) replayLocked() {
	paced, _ := s.sink.(PacedSink)
	ok := true
	for len(s.replay) > 0 {
		m := s.replay[0]
		if paced != nil && !paced.Room(len(m.Payload), s.resumeReplay) {
			s.mu.Unlock() // resumeReplay continues; live messages wait in pending
			return
		}
		s.replay = s.replay[1:]
		if ok = s.deliverLocked(m); !ok {
			break
		}
	}
	s.replay = nil
	s.goLiveLocked(ok)
}

// resumeReplay continues a paced replay once the sink has drained.
func (s *Subscription) resumeReplay() {
	s.mu.Lock()
	if s.state != stateSetup {
		s.mu.Unlock()
		return
	}
	s.replayLocked()
}

// goLiveLocked delivers what was buffered and goes live, or drops the subscription when a
// delivery failed. It unlocks s.mu.
func (s *Subscription) goLiveLocked(ok bool) {
	for i := 0; ok && i < len(s.pending); i++ {
		ok = s.deliverLocked(s.pending[i])
	}
	clear(s.pending)
	s.pending = s.pending[:0]
	if !ok {
		s.dropLocked(ErrSlowConsumer)
		return
	}
	s.state = stateLive
	again := s.catchup
	s.catchup = false
	s.mu.Unlock()
	if again {
		s.requestCatchup()
	}
}

// User returns the user the subscription belongs to.
func (s *Subscription) User() string { return s.user }

// Close releases the subscription; the node unsubscribes the channel when it was the user's
// last here. Close is idempotent.
func (s *Subscription) Close() {
	s.mu.Lock()
	s.state = stateClosed
	s.replay, s.pending = nil, nil
	s.mu.Unlock()
	s.detach()
}

// detach removes s from its channel once.
func (s *Subscription) detach() {
	h := s.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	c := s.ch
	if c == nil {
		return
	}
	s.ch = nil
	for i, x := range c.subs {
		if x == s {
			c.subs = append(c.subs[:i], c.subs[i+1:]...)
			h.conns--
			break
		}
	}
	if len(c.subs) == 0 {
		c.subs = nil
		c.link.markDirty(c)
		c.link.wakeFlusher()
	}
}

// offer takes a live message from the dispatcher. It never blocks on the client.
func (s *Subscription) offer(m Message) {
	s.mu.Lock()
	switch s.state {
	case stateLive:
		if !s.deliverLocked(m) {
			s.dropLocked(ErrSlowConsumer)
			return
		}
	case stateSetup, stateSyncing:
		if len(s.pending) >= s.hub.cfg.MaxPending {
			s.dropLocked(ErrSlowConsumer)
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
	return s.sink.Deliver(m)
}

// dropLocked closes the subscription for reason and tells the sink. It unlocks s.mu.
func (s *Subscription) dropLocked(reason error) {
	if s.state == stateClosed {
		s.mu.Unlock()
		return
	}
	s.state = stateClosed
	s.replay, s.pending = nil, nil
	s.mu.Unlock()
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
