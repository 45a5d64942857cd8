package subscriptions

import (
	"context"
	"fmt"
	"strings"
	"unicode/utf8"
	"unsafe"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"
)

// ephemeralPrefix starts an ephemeral message's envelope: published only, never stored, so
// it has no id (typing indicators, cursors). The envelope's tail follows it.
const ephemeralPrefix = `{"type":"message","ephemeral":true`

// ephemeralPipeline is how many publishes of one ephemeral room send share a pipeline.
const ephemeralPipeline = 256

// ephemeral encodes the envelope of an ephemeral message.
func (e Envelope) ephemeral() string { return ephemeralPrefix + e.tail() }

// PublishEphemeral publishes env on user's channel without storing it: the user's
// connections that are open now get it, once; nothing replays it, and it has no id.
func (h *Hub) PublishEphemeral(ctx context.Context, user string, env Envelope) error {
	if !ValidID(user) || !env.validIDs() {
		return ErrInvalidID
	}
	env.To = ""
	var err error
	if h.cluster {
		err = h.rdb.SPublish(ctx, h.keys.userChannel(user), env.ephemeral()).Err()
	} else {
		err = h.rdb.Publish(ctx, h.keys.userChannel(user), env.ephemeral()).Err()
	}
	if err != nil {
		return fmt.Errorf("%w: publish: %w", ErrUnavailable, err)
	}
	return nil
}

// publishRoomEphemeral publishes env to every member of room without storing it anywhere:
// one PUBLISH per member, pipelined, and neither the room's lock nor its history, since an
// ephemeral message has no place in any order that is kept.
func (h *Hub) publishRoomEphemeral(ctx context.Context, room string, env Envelope, how RoomSend) (RoomResult, error) {
	members, err := h.rdb.SMembers(ctx, h.keys.roomMembers(room)).Result()
	if err != nil {
		return RoomResult{}, fmt.Errorf("%w: read members of %s: %w", ErrUnavailable, room, err)
	}
	if how.RequireMember && !contains(members, env.From) {
		return RoomResult{}, ErrNotMember
	}
	payload := env.ephemeral()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(fanoutParallel)
	for start := 0; start < len(members); start += ephemeralPipeline {
		chunk := members[start:min(start+ephemeralPipeline, len(members))]
		g.Go(func() error {
			_, err := h.rdb.Pipelined(gctx, func(p redis.Pipeliner) error {
				for _, u := range chunk {
					if h.cluster {
						p.SPublish(gctx, h.keys.userChannel(u), payload)
					} else {
						p.Publish(gctx, h.keys.userChannel(u), payload)
					}
				}
				return nil
			})
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return RoomResult{}, fmt.Errorf("%w: publish to %s: %w", ErrUnavailable, room, err)
	}
	return RoomResult{Recipients: len(members)}, nil
}

// dispatchEphemeral offers an ephemeral message to the live subscriptions of its channel,
// as dispatch does a stored one; it reports false for anything else.
func (l *link) dispatchEphemeral(m *redis.Message) bool {
	if !strings.HasPrefix(m.Payload, ephemeralPrefix) || !utf8.ValidString(m.Payload) {
		return false
	}
	// Shared, not copied, as decodeMessage does: a Message's Payload is never modified.
	msg := Message{Payload: unsafe.Slice(unsafe.StringData(m.Payload), len(m.Payload))}
	l.mu.Lock()
	if c := l.channels[m.Channel]; c != nil {
		l.offering = append(l.offering[:0], c.subs...)
		l.roomOffs = append(l.roomOffs[:0], c.rsubs...)
	}
	l.mu.Unlock()
	for _, s := range l.offering {
		s.offerEphemeral(msg)
	}
	for _, rs := range l.roomOffs {
		rs.offerEphemeral(msg)
	}
	clear(l.offering)
	l.offering = l.offering[:0]
	clear(l.roomOffs)
	l.roomOffs = l.roomOffs[:0]
	return true
}

// offerEphemeral hands an ephemeral message to a live subscription's sink. A subscription
// still replaying or catching up does not get it: it would have to wait behind stored
// messages, and nothing can replay it later.
func (s *Subscription) offerEphemeral(m Message) {
	s.mu.Lock()
	if s.state != stateLive {
		s.mu.Unlock()
		return
	}
	if !s.sink.Deliver(m) {
		s.dropAndUnlock(ErrSlowConsumer)
		return
	}
	s.mu.Unlock()
}
