package subscriptions

import (
	"context"
	crand "crypto/rand"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"
)

// This file is the sending side of big rooms (docs/design.md, "Big rooms: fan-out on
// read"): a big room's message is one append to the room's stream and one publish on the
// room's channel; roomsub.go is the receiving side.

//go:embed bigroom.lua
var bigRoomLua string

// bigRoomScript sends to a big room in one call (bigroom.lua).
var bigRoomScript = redis.NewScript(bigRoomLua)

//go:embed roommode.lua
var roomModeLua string

// roomModeScript turns a room big or small and reads its members in the same step.
var roomModeScript = redis.NewScript(roomModeLua)

// DefaultBigRoomThreshold is the member count from which a room is big when
// Config.BigRoomThreshold is zero: well below the 1,000 members at which the per-member
// fan-out saturates a Redis core at about 90 messages/s (docs/benchmarks.md).
const DefaultBigRoomThreshold = 500

// roomHints remembers which rooms this node last found big, so that a small room's send
// does not pay a big-room call first and a big room's does not take the fan-out lock. A
// wrong hint costs one call and is corrected; the mode in Redis decides.
type roomHints struct {
	mu  sync.Mutex
	big map[string]bool
}

// maxRoomHints bounds the hints kept; past it they are forgotten (a room is then tried as
// small first, and found big by the per-member path's read of the mode).
const maxRoomHints = 10000

func (r *roomHints) isBig(room string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.big[room]
}

func (r *roomHints) set(room string, big bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !big {
		delete(r.big, room)
		return
	}
	if r.big == nil || len(r.big) >= maxRoomHints {
		r.big = make(map[string]bool)
	}
	r.big[room] = true
}

// bigOutcome is what the big-room script answered.
type bigOutcome int

const (
	bigSmall     bigOutcome = 0  // the room is small: nothing was done
	bigShrink    bigOutcome = 1  // the room fell below half the threshold: nothing was done
	bigSent      bigOutcome = 2  // sent
	bigNotMember bigOutcome = -1 // the sender is not a member
)

// bigRoomsOn reports whether rooms may be big: the threshold is not off.
func (h *Hub) bigRoomsOn() bool { return h.cfg.BigRoomThreshold > 0 }

// bigStreamSize is the MAXLEN of a big room's stream: the room history's size, or, when
// the operator keeps no room history, the users' history size, since a big room's stream is
// then its only copy.
func (h *Hub) bigStreamSize() int64 {
	if h.cfg.RoomHistorySize > 0 {
		return h.cfg.RoomHistorySize
	}
	return h.cfg.HistorySize
}

// shrinkBelow is the member count a big room turns small under: half the threshold, or,
// with big rooms off, any count, so that every big room turns small at its next send.
func (h *Hub) shrinkBelow() int {
	if h.bigRoomsOn() {
		return max(1, h.cfg.BigRoomThreshold/2)
	}
	return 1 << 30
}

// sendBig runs the big-room script once.
func (h *Hub) sendBig(ctx context.Context, room string, env Envelope, how RoomSend) (out bigOutcome, id string, members int, _ error) {
	sender := ""
	if how.RequireMember {
		sender = env.From
	}
	below := h.shrinkBelow()
	eph := "0"
	if how.Ephemeral {
		eph = "1"
	}
	keys := []string{h.keys.roomMode(room), h.keys.roomMembers(room), h.keys.roomHistory(room), h.keys.roomChannel(room)}
	args := []any{sender, h.bigStreamSize(), h.cfg.HistoryTTL.Milliseconds(), env.tail(), h.pub.publishCmd,
		h.scriptDeadline(), below, eph}
	// One call, with --wait-replicas followed by a WAIT on the same connection, as the
	// per-member path's (replicas.go).
	var cmd *redis.Cmd
	wait := h.pub.replicas.start(ctx)
	wait.exec(h.rdb, 1, func(int) string { return keys[0] }, func(time.Duration, error) {},
		func(pipe redis.Pipeliner, _ int) (redis.Cmder, *redis.Script) {
			cmd = pipe.EvalSha(ctx, bigRoomScript.Hash(), keys, args...)
			return cmd, bigRoomScript
		})
	v, err := cmd.Slice()
	if err == nil && len(v) > 0 && v[0] == int64(bigSent) && !how.Ephemeral {
		wait.checkRoom() // an ephemeral message is stored nowhere: nothing to replicate
	}
	if err != nil {
		return 0, "", 0, fmt.Errorf("%w: send to %s: %w", ErrUnavailable, room, err)
	}
	kind, _ := v[0].(int64)
	if len(v) > 2 {
		id, _ = v[1].(string)
		n, _ := v[2].(int64)
		members = int(n)
	}
	return bigOutcome(kind), id, members, nil
}

// publishBig sends to room when it is big. It reports handled false when the room is small
// (or was just turned small), and the caller takes the per-member path.
func (h *Hub) publishBig(ctx context.Context, room string, env Envelope, how RoomSend) (res RoomResult, handled bool, err error) {
	out, id, members, err := h.sendBig(ctx, room, env, how)
	if err != nil {
		return RoomResult{}, true, err
	}
	switch out {
	case bigNotMember:
		return RoomResult{}, true, ErrNotMember
	case bigShrink:
		unlock, err := h.lockRoom(ctx, room)
		if err != nil {
			return RoomResult{}, true, err
		}
		defer unlock()
		if err := h.changeMode(ctx, room, false); err != nil {
			return RoomResult{}, true, err
		}
		return RoomResult{}, false, nil
	case bigSent:
		res.Recipients = members
		if id != "" {
			if res.HistoryID, err = ParseStreamID(id); err != nil {
				return RoomResult{}, true, fmt.Errorf("%w: room stream id: %w", ErrUnavailable, err)
			}
		}
		return res, true, nil
	}
	return RoomResult{}, false, nil
}

// roomModeControl is the control message a mode or membership change publishes on a
// member's own channel (see roomsub.go for what a node does with it).
type roomModeControl struct {
	Type  string `json:"type"`
	Op    string `json:"op"`
	Room  string `json:"room"`
	Mode  string `json:"mode"` // "big", "small", "join" or "leave"
	Pos   string `json:"pos,omitempty"`
	Reply string `json:"reply,omitempty"`
}

// changeMode turns room big (or small) under its fan-out lock, which the caller holds, and
// tells every member's nodes, through the members' channels, where the change is in the
// room's stream.
func (h *Hub) changeMode(ctx context.Context, room string, big bool) error {
	mode := "small"
	if big {
		mode = "big"
	}
	keys := []string{h.keys.roomMode(room), h.keys.roomMembers(room), h.keys.roomHistory(room)}
	v, err := roomModeScript.Run(ctx, h.rdb, keys, mode, h.shrinkBelow()).Slice()
	if err == nil && len(v) == 0 {
		return nil // turned or grown meanwhile by another send
	}
	if err != nil || len(v) != 2 {
		return fmt.Errorf("%w: turn %s %s: %v %w", ErrUnavailable, room, mode, v, err)
	}
	pos, _ := v[0].(string)
	list, _ := v[1].([]any)
	members := make([]string, 0, len(list))
	for _, m := range list {
		if s, ok := m.(string); ok {
			members = append(members, s)
		}
	}
	h.log.Info("room changed mode", "room", room, "mode", mode, "members", len(members), "pos", pos)
	msg, _ := json.Marshal(roomModeControl{Type: "control", Op: "room", Room: room, Mode: mode, Pos: pos})
	return h.publishControls(ctx, members, string(msg))
}

// publishControls publishes msg on each user's channel, pipelined.
func (h *Hub) publishControls(ctx context.Context, users []string, msg string) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(fanoutParallel)
	for start := 0; start < len(users); start += ephemeralPipeline {
		chunk := users[start:min(start+ephemeralPipeline, len(users))]
		g.Go(func() error {
			_, err := h.rdb.Pipelined(gctx, func(p redis.Pipeliner) error {
				for _, u := range chunk {
					p.Do(gctx, h.pub.publishCmd, h.keys.userChannel(u), msg)
				}
				return nil
			})
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return fmt.Errorf("%w: publish room controls: %w", ErrUnavailable, err)
	}
	return nil
}

// roomModeOf reads whether room is big, and its newest stream id.
func (h *Hub) roomModeOf(ctx context.Context, room string) (big bool, top StreamID, err error) {
	var mode *redis.StringCmd
	var last *redis.XMessageSliceCmd
	_, err = h.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		mode = p.HGet(ctx, h.keys.roomMode(room), "big")
		last = p.XRevRangeN(ctx, h.keys.roomHistory(room), "+", "-", 1)
		return nil
	})
	if err != nil && err != redis.Nil {
		return false, StreamID{}, fmt.Errorf("%w: read the mode of %s: %w", ErrUnavailable, room, err)
	}
	if l := last.Val(); len(l) > 0 {
		top, _ = ParseStreamID(l[0].ID)
	}
	return mode.Val() == "1", top, nil
}

// joinedBig tells the nodes holding user that it joined room, when room is big: they start
// delivering the room to the user's connections from top, the newest id read before the
// join (so nothing sent after the join is missed).
func (h *Hub) joinedBig(ctx context.Context, room, user string, top StreamID) error {
	big, _, err := h.roomModeOf(ctx, room)
	if err != nil || !big {
		return err
	}
	msg, _ := json.Marshal(roomModeControl{Type: "control", Op: "room", Room: room, Mode: "join", Pos: top.String()})
	return h.publishControls(ctx, []string{user}, string(msg))
}

// leftBig tells the nodes holding user that it left room, and waits (up to
// kickReplyTimeout each) until each has stopped delivering the room to it, so that no
// message sent after the leave returns reaches the user, whichever node sends it.
func (h *Hub) leftBig(ctx context.Context, room, user string) error {
	reply := h.keys.bucket(user) + ":left:" + randomToken()
	msg, _ := json.Marshal(roomModeControl{Type: "control", Op: "room", Room: room, Mode: "leave", Reply: reply})
	nodes, err := h.rdb.Do(ctx, h.pub.publishCmd, h.keys.userChannel(user), string(msg)).Int64()
	if err != nil {
		return fmt.Errorf("%w: publish leave: %w", ErrUnavailable, err)
	}
	defer h.rdb.Del(context.WithoutCancel(ctx), reply)
	for range nodes {
		if _, err := h.rdb.BLPop(ctx, kickReplyTimeout, reply).Result(); err != nil {
			if err == redis.Nil {
				h.log.Warn("a node holding the user did not confirm a big room's leave", "user", user, "room", room)
				return nil
			}
			return fmt.Errorf("%w: wait for leave replies: %w", ErrUnavailable, err)
		}
	}
	return nil
}

// bigEnvelope is a big room message as delivered, rebuilt from its stream entry.
func bigEnvelope(id, tail string) []byte {
	b := make([]byte, 0, len(envelopePrefix)+2*len(id)+32+len(tail))
	b = append(b, envelopePrefix...)
	b = append(b, id...)
	b = append(b, `","big":true,"history_id":"`...)
	b = append(b, id...)
	b = append(b, '"')
	return append(b, tail...)
}

// roomModeFrame tells a client where a room's delivery changed: big from pos on (the
// position it resumes the room from), or small again.
func roomModeFrame(room string, big bool, pos StreamID) []byte {
	b := []byte(`{"type":"room_mode","room":"` + room + `","big":` + strconv.FormatBool(big))
	if big {
		b = append(b, `,"last_id":"`+pos.String()+`"`...)
	}
	return append(b, '}')
}

// randomToken is a random name part for reply lists.
func randomToken() string {
	var b [12]byte
	_, _ = crand.Read(b[:])
	return hex.EncodeToString(b[:])
}
