package subscriptions

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrKicked is given to the Sinks of a user whose connections were closed by the API; the
// client must not reconnect by itself.
var ErrKicked = errors.New("disconnected by the service")

// controlPrefix starts control messages on a user's channel. They are published, never
// stored: they act on the nodes that hold the user now.
const controlPrefix = `{"type":"control"`

type controlMessage struct {
	Type  string `json:"type"`
	Op    string `json:"op"`
	Reply string `json:"reply"`
}

// kickReplyTimeout bounds how long Disconnect waits for each node holding the user.
const kickReplyTimeout = 5 * time.Second

// Disconnect closes every connection of user on every node, without a user→node table: it
// publishes a control message on the user's own channel, which reaches exactly the nodes
// subscribed to it (the publish answers how many), and each of them closes its local
// connections and replies with how many it closed. It returns the total.
func (h *Hub) Disconnect(ctx context.Context, user string) (int, error) {
	if !ValidID(user) {
		return 0, ErrInvalidID
	}
	var b [12]byte
	_, _ = crand.Read(b[:])
	reply := h.keys.bucket(user) + ":kick:" + hex.EncodeToString(b[:])
	msg, _ := json.Marshal(controlMessage{Type: "control", Op: "disconnect", Reply: reply})
	var nodes int64
	var err error
	if h.cluster {
		nodes, err = h.rdb.SPublish(ctx, h.keys.userChannel(user), msg).Result()
	} else {
		nodes, err = h.rdb.Publish(ctx, h.keys.userChannel(user), msg).Result()
	}
	if err != nil {
		return 0, fmt.Errorf("%w: publish disconnect: %w", ErrUnavailable, err)
	}
	defer h.rdb.Del(context.WithoutCancel(ctx), reply)
	total := 0
	for range nodes {
		v, err := h.rdb.BLPop(ctx, kickReplyTimeout, reply).Result()
		if errors.Is(err, redis.Nil) {
			h.log.Warn("a node holding the user did not answer the disconnect", "user", user)
			break // it died meanwhile; its connections are gone with it
		}
		if err != nil {
			return total, fmt.Errorf("%w: wait for disconnect replies: %w", ErrUnavailable, err)
		}
		n, _ := strconv.Atoi(v[1])
		total += n
	}
	return total, nil
}

// control carries out a control message that arrived on one of the link's channels. It
// runs on the link's reader; the reply, a Redis round trip, runs apart and is joined by
// link.run, under ctx.
func (l *link) control(ctx context.Context, m *redis.Message) {
	var cm controlMessage
	if json.Unmarshal([]byte(m.Payload), &cm) != nil {
		return
	}
	if cm.Op == "room" {
		var rm roomModeControl
		if json.Unmarshal([]byte(m.Payload), &rm) == nil && ValidID(rm.Room) {
			l.roomControl(ctx, &rm, m.Channel)
		}
		return
	}
	if cm.Op != "disconnect" || cm.Reply == "" {
		return
	}
	h := l.hub
	subs := l.subscribers(m.Channel)
	l.tasks.Go(func() {
		n := 0
		for _, s := range subs {
			if s.kick() {
				n++
			}
		}
		ctx, cancel := context.WithTimeout(ctx, kickReplyTimeout)
		defer cancel()
		_, err := h.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.RPush(ctx, cm.Reply, n)
			p.Expire(ctx, cm.Reply, time.Minute)
			return nil
		})
		if err != nil {
			h.log.Warn("replying to a disconnect failed", "err", err)
		}
	})
}

// kick closes the subscription as ErrKicked; it reports whether it was open.
func (s *Subscription) kick() bool {
	s.mu.Lock()
	if s.state == stateClosed {
		s.mu.Unlock()
		return false
	}
	s.dropAndUnlock(ErrKicked)
	return true
}
