package subscriptions

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"
)

// RoomSend says how PublishRoomMessage sends.
type RoomSend struct {
	// RequireMember refuses a sender (Envelope.From) that is not a member of the room with
	// ErrNotMember: a client's send. Backends post without it.
	RequireMember bool
	// Ephemeral publishes the message only: no stream keeps it (the members' or the
	// room's), it has no id and is never replayed. Membership is checked all the same.
	Ephemeral bool
}

// RoomResult is the outcome of a room send.
type RoomResult struct {
	// Recipients is how many members the message was delivered to.
	Recipients int
	// HistoryID is the message's id in the room's own stream (RoomHistory), which every
	// member's copy carries as "history_id"; zero without room history.
	HistoryID StreamID
}

// PublishRoomMessage fans env out to every member of room: the message is appended to each
// member's stream and published on each member's channel, so it reaches all their devices
// on every node, and it is kept once in the room's own stream (Config.RoomHistorySize).
//
// Members are read once and delivered by one script call per group of up to 64 (on Redis
// Cluster, of one bucket), pipelined; Redis interleaves other traffic between the calls, so
// a large room does not stall the node. Fan-outs of one room are serialized by a lock in
// Redis, so every member sees the room's messages in the same relative order, and the
// room's stream holds them in that order too.
//
// The room's stream is appended first, so that every member's copy can carry its id: on a
// single Redis, for a room of one group, in the same script call as the fan-out; otherwise
// (a larger room, or Redis Cluster, where the room's stream lives in the room's own slot)
// by a call of its own just before, and a failure there stores and delivers nothing.
//
// With Config.WaitReplicas, a fan-out whose replicas did not all confirm it in time returns
// its result with ErrNotReplicated: delivered, stored on the master only.
func (h *Hub) PublishRoomMessage(ctx context.Context, room string, env Envelope, how RoomSend) (_ RoomResult, err error) {
	if !ValidID(room) || !env.validIDs() {
		return RoomResult{}, ErrInvalidID
	}
	env.Room, env.To = room, ""
	// A big room is sent without the lock; a small one (or one that just turned small)
	// takes the per-member path, which may turn it big and send it big (docs/design.md,
	// "Big rooms"). Which to try first is what this node saw last of the room: either
	// finds out when the room is the other. An ephemeral send tries big first, since the
	// per-member path would publish once per member of a room that may be big.
	ctx, short := watchReplication(ctx)
	defer func() {
		if err == nil && short.Load() {
			err = ErrNotReplicated
		}
	}()
	tryBig := how.Ephemeral || h.roomHints.isBig(room)
	for range 4 {
		if tryBig {
			res, handled, err := h.publishBig(ctx, room, env, how)
			if handled {
				h.roomHints.set(room, err == nil || !errors.Is(err, ErrUnavailable))
				return res, err
			}
			h.roomHints.set(room, false)
		}
		if how.Ephemeral {
			return h.publishRoomEphemeral(ctx, room, env, how)
		}
		res, again, err := h.publishSmall(ctx, room, env, how)
		if !again {
			return res, err
		}
		h.roomHints.set(room, true)
		tryBig = true
	}
	return RoomResult{}, fmt.Errorf("%w: room %s kept changing mode", ErrUnavailable, room)
}

// publishSmall is the per-member path of PublishRoomMessage, under the room's fan-out
// lock. It reports again when the room is big (it turned big meanwhile, or this send
// turned it big): the caller sends it big.
func (h *Hub) publishSmall(ctx context.Context, room string, env Envelope, how RoomSend) (_ RoomResult, again bool, _ error) {
	unlock, err := h.lockRoom(ctx, room)
	if err != nil {
		return RoomResult{}, false, err
	}
	defer unlock()
	var membersCmd *redis.StringSliceCmd
	var modeCmd *redis.StringCmd
	_, err = h.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		membersCmd = p.SMembers(ctx, h.keys.roomMembers(room))
		modeCmd = p.HGet(ctx, h.keys.roomMode(room), "big")
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return RoomResult{}, false, fmt.Errorf("%w: read members of %s: %w", ErrUnavailable, room, err)
	}
	members := membersCmd.Val()
	if how.RequireMember && !contains(members, env.From) {
		return RoomResult{}, false, ErrNotMember
	}
	if modeCmd.Val() == "1" {
		return RoomResult{}, true, nil
	}
	if h.bigRoomsOn() && len(members) >= h.cfg.BigRoomThreshold {
		return RoomResult{}, true, h.changeMode(ctx, room, true)
	}
	res, err := h.fanoutRoom(ctx, room, env, members)
	return res, false, err
}

// fanoutRoom delivers env to each of members: today's per-member path.
func (h *Hub) fanoutRoom(ctx context.Context, room string, env Envelope, members []string) (RoomResult, error) {
	tail := env.tail()
	groups := h.fanoutGroups(members)
	var res RoomResult
	historyKey := ""
	if h.cfg.RoomHistorySize > 0 {
		historyKey = h.keys.roomHistory(room)
	}
	if historyKey != "" && (h.cluster || len(groups) != 1) {
		_, id, err := h.deliverGroups(ctx, [][]string{nil}, tail, historyKey)
		if err != nil {
			return RoomResult{}, err
		}
		if res.HistoryID, err = ParseStreamID(id); err != nil {
			return RoomResult{}, fmt.Errorf("%w: room history id: %w", ErrUnavailable, err)
		}
		tail = `,"history_id":"` + id + `"` + tail
		historyKey = ""
	}
	n, id, err := h.fanout(ctx, groups, tail, historyKey)
	if err != nil {
		return RoomResult{}, err
	}
	if id != "" {
		if res.HistoryID, err = ParseStreamID(id); err != nil {
			return RoomResult{}, fmt.Errorf("%w: room history id: %w", ErrUnavailable, err)
		}
	}
	if failed := int64(len(members)) - int64(n); failed > 0 {
		h.log.Warn("room members not delivered to: their stream keys hold another type", "room", room, "members", failed)
	}
	res.Recipients = n
	return res, nil
}

// fanout delivers tail to the members in groups, fanoutPipeline calls to a pipeline and
// fanoutParallel pipelines at once, and returns how many were delivered to. historyKey,
// when set, goes with the first call (a single group on a single Redis).
func (h *Hub) fanout(ctx context.Context, groups [][]string, tail, historyKey string) (int, string, error) {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(fanoutParallel)
	var failed atomic.Int64
	var historyID string
	total := 0
	for _, grp := range groups {
		total += len(grp)
	}
	for start := 0; start < len(groups); start += fanoutPipeline {
		chunk := groups[start:min(start+fanoutPipeline, len(groups))]
		key := ""
		if start == 0 {
			key = historyKey
		}
		g.Go(func() error {
			n, id, err := h.deliverGroups(gctx, chunk, tail, key)
			failed.Add(n)
			if id != "" {
				historyID = id // only the first chunk's call has it
			}
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return 0, "", err
	}
	return total - int(failed.Load()), historyID, nil
}
