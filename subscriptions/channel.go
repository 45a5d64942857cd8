package subscriptions

import "slices"

// chanState is where a user channel stands on its link's current Pub/Sub connection. It is
// the whole of the channel's subscription state: whether SUBSCRIBE or UNSUBSCRIBE is in
// flight, whether Redis confirmed it, and whether the subscribers must catch up from their
// streams once it is confirmed. It changes only through channel.apply, under link.mu.
//
// Transitions (any other event in a state is a bug, and apply refuses it):
//
//	idle          --subscribe-->   subscribing    the flusher wrote SUBSCRIBE
//	subscribing   --confirmed-->   live           Redis confirmed; readyCh is closed
//	live          --unsubscribe--> unsubscribing  the last subscriber left; readyCh is renewed
//	unsubscribing --confirmed-->   idle           the channel is forgotten if nobody came back
//	live          --connLost-->    lost           the link took a new connection; readyCh is renewed
//	lost          --subscribe-->   recovering     SUBSCRIBE written on the new connection
//	recovering    --confirmed-->   live           and the subscribers catch up from their streams
//	recovering    --connLost-->    lost
//	lost          --connLost-->    lost
//	idle, subscribing, unsubscribing --connLost--> idle
type chanState uint8

const (
	chanIdle          chanState = iota // not subscribed on the connection; nothing in flight
	chanSubscribing                    // SUBSCRIBE written, its confirmation due
	chanLive                           // confirmed: the channel's messages arrive
	chanUnsubscribing                  // UNSUBSCRIBE written, its confirmation due
	chanLost                           // was live when the connection was replaced; not subscribed on the new one yet
	chanRecovering                     // SUBSCRIBE written on a new connection; its subscribers catch up once confirmed
)

var chanStateNames = [...]string{"idle", "subscribing", "live", "unsubscribing", "lost", "recovering"}

func (s chanState) String() string { return chanStateNames[s] }

// inFlight reports whether a command for the channel awaits Redis's confirmation.
func (s chanState) inFlight() bool {
	return s == chanSubscribing || s == chanUnsubscribing || s == chanRecovering
}

// chanEvent is something that happens to a channel.
type chanEvent uint8

const (
	evSubscribe   chanEvent = iota // the flusher writes SUBSCRIBE
	evUnsubscribe                  // the flusher writes UNSUBSCRIBE
	evConfirmed                    // Redis confirmed the command in flight
	evConnLost                     // the link replaced its Pub/Sub connection
)

// next returns the state after e, and false when e cannot happen in s.
func (s chanState) next(e chanEvent) (chanState, bool) {
	switch e {
	case evSubscribe:
		switch s {
		case chanIdle:
			return chanSubscribing, true
		case chanLost:
			return chanRecovering, true
		}
	case evUnsubscribe:
		if s == chanLive {
			return chanUnsubscribing, true
		}
	case evConfirmed:
		switch s {
		case chanSubscribing, chanRecovering:
			return chanLive, true
		case chanUnsubscribing:
			return chanIdle, true
		}
	case evConnLost:
		switch s {
		case chanLive, chanLost, chanRecovering:
			return chanLost, true
		default:
			return chanIdle, true
		}
	}
	return s, false
}

// channel is the node's state of one user channel; its fields are guarded by its link's mu.
type channel struct {
	name, user string
	link       *link
	subs       []*Subscription
	rsubs      []*roomSub // on a big room's channel: the connections it is delivered to
	state      chanState
	readyCh    chan struct{} // closed while state is live, for subscribers waiting on Redis
	queued     bool          // in link.dirty
}

func newChannel(name, user string, l *link) *channel {
	return &channel{name: name, user: user, link: l, readyCh: make(chan struct{})}
}

// apply moves c through e; it reports false, changing nothing, when e cannot happen now.
// Subscribers wait on readyCh, so it is closed on entering live and renewed on leaving it.
func (c *channel) apply(e chanEvent) bool {
	next, ok := c.state.next(e)
	if !ok {
		return false
	}
	switch {
	case next == chanLive:
		close(c.readyCh)
	case c.state == chanLive:
		c.readyCh = make(chan struct{})
	}
	c.state = next
	return true
}

// attach registers s on user's channel and returns a channel closed once Redis has
// confirmed the subscription.
func (h *Hub) attach(user string, s *Subscription) <-chan struct{} {
	name := h.keys.userChannel(user)
	l := h.linkFor(user)
	s.link = l
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.channels[name]
	if c == nil {
		c = newChannel(name, user, l)
		l.channels[name] = c
	}
	c.subs = append(c.subs, s)
	s.ch = c
	if len(c.subs) == 1 {
		l.markDirtyLocked(c)
		l.wakeFlusher()
	}
	return c.readyCh
}

// detach removes s from its channel once. Once it returns, no later dispatch offers s a
// message (one that copied the subscribers before may still; see link.dispatch).
func (s *Subscription) detach() {
	l := s.link
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	c := s.ch
	if c == nil {
		return
	}
	s.ch = nil
	if i := slices.Index(c.subs, s); i >= 0 {
		c.subs = slices.Delete(c.subs, i, i+1)
	}
	if len(c.subs) == 0 {
		c.subs = nil
		l.markDirtyLocked(c)
		l.wakeFlusher()
	}
}

// localConnections returns how many of user's subscriptions this node holds.
func (h *Hub) localConnections(user string) int {
	l := h.existingLinkFor(user)
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if c := l.channels[h.keys.userChannel(user)]; c != nil {
		return len(c.subs)
	}
	return 0
}

// channelStats lists the user channels with local subscriptions, in no order, and counts
// the subscriptions.
func (h *Hub) channelStats() (chans []ChannelStats, conns int) {
	chans = []ChannelStats{}
	for _, l := range h.allLinks() {
		l.mu.Lock()
		for _, c := range l.channels {
			if len(c.subs) > 0 {
				chans = append(chans, ChannelStats{User: c.user, Channel: c.name, Connections: len(c.subs)})
				conns += len(c.subs)
			}
		}
		l.mu.Unlock()
	}
	return chans, conns
}
