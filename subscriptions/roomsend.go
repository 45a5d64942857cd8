package subscriptions

import (
	"context"
	"errors"
	"fmt"
	"slices"
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
// room's stream holds them in that order too. Sends of a room that arrive while a fan-out of
// it runs on this node wait for it and go together in the next one (roomBatches).
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
		res, again, err := h.publishBatched(ctx, room, env, how)
		if !again {
			return res, err
		}
		h.roomHints.set(room, true)
		tryBig = true
	}
	return RoomResult{}, fmt.Errorf("%w: room %s kept changing mode", ErrUnavailable, room)
}

// publishSmall is the per-member path of PublishRoomMessage for a batch of sends of room
// (roombatch.go), under the room's fan-out lock: it sets each item's outcome. It sets again
// on every item when the room is big (it turned big meanwhile, or this batch turned it
// big): the callers send them big.
func (h *Hub) publishSmall(ctx context.Context, room string, items []*roomItem) {
	fail := func(again bool, err error) {
		for _, it := range items {
			it.again, it.err = again, err
		}
	}
	unlock, err := h.lockRoom(ctx, room)
	if err != nil {
		fail(false, err)
		return
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
		fail(false, fmt.Errorf("%w: read members of %s: %w", ErrUnavailable, room, err))
		return
	}
	members := membersCmd.Val()
	sending := make([]*roomItem, 0, len(items))
	for _, it := range items {
		if it.how.RequireMember && !contains(members, it.env.From) {
			it.err = ErrNotMember
			continue
		}
		sending = append(sending, it)
	}
	if len(sending) == 0 {
		return
	}
	items = sending
	if modeCmd.Val() == "1" {
		fail(true, nil)
		return
	}
	if h.bigRoomsOn() && len(members) >= h.cfg.BigRoomThreshold {
		fail(true, h.changeMode(ctx, room, true))
		return
	}
	tails := make([]string, len(items))
	for i, it := range items {
		tails[i] = it.env.tail()
	}
	res, err := h.fanoutRoom(ctx, room, tails, members)
	if err != nil {
		fail(false, err)
		return
	}
	for i, it := range items {
		it.res = res[i]
	}
}

// fanoutRoom delivers the messages of tails, in order, to each of members: the per-member
// path. It returns one result for each.
func (h *Hub) fanoutRoom(ctx context.Context, room string, tails []string, members []string) ([]RoomResult, error) {
	groups := h.fanoutGroups(members)
	res := make([]RoomResult, len(tails))
	historyKey := ""
	if h.cfg.RoomHistorySize > 0 {
		historyKey = h.keys.roomHistory(room)
	}
	withIDs := func(ids []string) error {
		if len(ids) != len(tails) {
			return nil
		}
		for i, id := range ids {
			var err error
			if res[i].HistoryID, err = ParseStreamID(id); err != nil {
				return fmt.Errorf("%w: room history id: %w", ErrUnavailable, err)
			}
		}
		return nil
	}
	if historyKey != "" && (h.cluster || len(groups) != 1) {
		_, ids, err := h.deliverGroups(ctx, [][]string{nil}, tails, historyKey)
		if err != nil {
			return nil, err
		}
		if err := withIDs(ids); err != nil {
			return nil, err
		}
		tails = slices.Clone(tails)
		for i, id := range ids {
			tails[i] = `,"history_id":"` + id + `"` + tails[i]
		}
		historyKey = ""
	}
	n, ids, err := h.fanout(ctx, groups, tails, historyKey)
	if err != nil {
		return nil, err
	}
	if err := withIDs(ids); err != nil {
		return nil, err
	}
	if failed := int64(len(members)) - int64(n); failed > 0 {
		h.log.Warn("room members not delivered to: their stream keys hold another type", "room", room, "members", failed)
	}
	for i := range res {
		res[i].Recipients = n
	}
	return res, nil
}

// fanout delivers the messages of tails to the members in groups, fanoutPipeline calls to a
// pipeline and fanoutParallel pipelines at once, and returns how many were delivered to.
// historyKey, when set, goes with the first call (a single group on a single Redis), whose
// room stream ids it returns.
func (h *Hub) fanout(ctx context.Context, groups [][]string, tails []string, historyKey string) (int, []string, error) {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(fanoutParallel)
	var failed atomic.Int64
	var historyIDs []string
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
			n, ids, err := h.deliverGroups(gctx, chunk, tails, key)
			failed.Add(n)
			if ids != nil {
				historyIDs = ids // only the first chunk's call has them
			}
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return 0, nil, err
	}
	return total - int(failed.Load()), historyIDs, nil
}
