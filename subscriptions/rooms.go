package subscriptions

import (
	"context"
	crand "crypto/rand"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrNotMember is returned when a user posts to a room it is not in.
var ErrNotMember = errors.New("not a member of the room")

const (
	// fanoutGroup is how many members one script call delivers to: few enough that one call
	// holds Redis for well under a millisecond, so other traffic interleaves.
	fanoutGroup = 64
	// fanoutPipeline is how many script calls share one pipeline.
	fanoutPipeline = 16
	// fanoutParallel is how many pipelines of one fan-out are in flight at once.
	fanoutParallel = 4
	// roomLockLease bounds how long a crashed node can hold a room's fan-out lock.
	roomLockLease = 30 * time.Second
)

// ErrQuotaExceeded is what a QuotaError is: a join refused because the user is in as many
// rooms as it may be, or the room has as many members as it may have. Nothing changed.
var ErrQuotaExceeded = errors.New("quota exceeded")

// Quotas a QuotaError names.
const (
	QuotaRoomsPerUser = "rooms_per_user"
	QuotaRoomMembers  = "room_members"
)

// QuotaError is a join refused by a quota (Config.MaxRoomsPerUser or MaxRoomMembers). It
// matches ErrQuotaExceeded with errors.Is.
type QuotaError struct {
	// Quota is QuotaRoomsPerUser or QuotaRoomMembers.
	Quota string
	// Max is the quota's value.
	Max int
}

func (e *QuotaError) Error() string {
	if e.Quota == QuotaRoomsPerUser {
		return fmt.Sprintf("the user is in %d rooms, the most one user may join", e.Max)
	}
	return fmt.Sprintf("the room has %d members, the most one room may have", e.Max)
}

// Is makes a QuotaError match ErrQuotaExceeded.
func (e *QuotaError) Is(target error) bool { return target == ErrQuotaExceeded }

//go:embed delivery.lua
var deliveryLua string

// deliveryScript appends one message to many users' streams and publishes it on their
// channels (a room's fan-out). It is loaded at startup and called by its SHA inside
// pipelines, where go-redis has no EVAL fallback (see pipeline.Scripts).
var deliveryScript = redis.NewScript(deliveryLua)

//go:embed join.lua
var joinLua string

var joinScript = redis.NewScript(joinLua)

// Join adds user to room. It reports whether the user was not a member before. A user in
// MaxRoomsPerUser rooms, or a room with MaxRoomMembers members, refuses a new membership with
// a *QuotaError and nothing changes; re-joining a room the user is in always succeeds.
//
// On a single Redis one script checks both quotas and changes both sets, atomically. On
// Redis Cluster the user's rooms and the room's members live in different slots: the
// script runs on the user's set, then on the room's, and a refusal by the room takes the
// room back out of the user's set. A failure between the two leaves the room in the user's
// set only, which counts against the user's quota until the join is repeated (as a client
// does with a join that got no ack) or the room left.
func (h *Hub) Join(ctx context.Context, room, user string) (bool, error) {
	if !ValidID(room) || !ValidID(user) {
		return false, ErrInvalidID
	}
	if !h.bigRoomsOn() {
		return h.join(ctx, room, user)
	}
	// Read before the join: the user's nodes deliver the room from there, which may be a
	// message early but never one late.
	_, top, err := h.roomModeOf(ctx, room)
	if err != nil {
		return false, err
	}
	added, err := h.join(ctx, room, user)
	if err != nil {
		return false, err
	}
	// Also on a re-join: a client repeats a join that got no answer.
	return added, h.joinedBig(ctx, room, user, top)
}

// join is Join's change of the two sets.
func (h *Hub) join(ctx context.Context, room, user string) (bool, error) {
	userRooms, members := h.keys.userRooms(user), h.keys.roomMembers(room)
	if !h.cluster {
		n, err := joinScript.Run(ctx, h.rdb, []string{userRooms, members},
			room, h.cfg.MaxRoomsPerUser, user, h.cfg.MaxRoomMembers).Int()
		if err != nil {
			return false, fmt.Errorf("%w: join %s to %s: %w", ErrUnavailable, user, room, err)
		}
		return h.joined(n)
	}
	added, err := joinScript.Run(ctx, h.rdb, []string{userRooms}, room, h.cfg.MaxRoomsPerUser).Int()
	if err != nil {
		return false, fmt.Errorf("%w: join %s to %s: %w", ErrUnavailable, user, room, err)
	}
	if added < 0 {
		return h.joined(added)
	}
	n, err := joinScript.Run(ctx, h.rdb, []string{members}, user, h.cfg.MaxRoomMembers).Int()
	if err != nil {
		return false, fmt.Errorf("%w: join %s to %s: %w", ErrUnavailable, user, room, err)
	}
	if n < 0 && added == 1 {
		if err := h.rdb.SRem(ctx, userRooms, room).Err(); err != nil {
			h.log.Warn("taking back a refused join failed; the room counts against the user's quota until it is left", "user", user, "room", room, "err", err)
		}
	}
	if n < 0 {
		n = -2 // the room's members, whichever call it was
	}
	return h.joined(n)
}

// joined turns the join script's answer into Join's.
func (h *Hub) joined(n int) (bool, error) {
	switch n {
	case -1:
		return false, &QuotaError{Quota: QuotaRoomsPerUser, Max: h.cfg.MaxRoomsPerUser}
	case -2:
		return false, &QuotaError{Quota: QuotaRoomMembers, Max: h.cfg.MaxRoomMembers}
	}
	return n == 1, nil
}

// leaveLua removes a member from a room's member set and, when that leaves the room empty,
// deletes the room's history and mode too (all in the room's slot). It answers SREM's count.
const leaveLua = `local n = redis.call('SREM', KEYS[1], ARGV[1])
if n == 1 and redis.call('SCARD', KEYS[1]) == 0 then redis.call('DEL', KEYS[2], KEYS[3]) end
return n`

// Leave removes user from room. It reports whether the user was a member. A room whose last
// member leaves is gone from Redis, its history included. The room's member set and the
// user's room set change in one MULTI (on Redis Cluster, where they live in different
// slots, in one pipeline of idempotent commands).
func (h *Hub) Leave(ctx context.Context, room, user string) (bool, error) {
	if !ValidID(room) || !ValidID(user) {
		return false, ErrInvalidID
	}
	big := false
	if h.bigRoomsOn() {
		var err error
		if big, _, err = h.roomModeOf(ctx, room); err != nil {
			return false, err
		}
	}
	left, err := h.leave(ctx, room, user)
	if err != nil || !big {
		return left, err
	}
	// Also when the user was not a member: a client repeats a leave that got no answer.
	return left, h.leftBig(ctx, room, user)
}

// leave is Leave's change of the two sets.
func (h *Hub) leave(ctx context.Context, room, user string) (bool, error) {
	var changed *redis.Cmd
	change := func(p redis.Pipeliner) error {
		// EVAL, not EVALSHA: in a pipeline nothing would load a script Redis lost, and a
		// leave is rare enough to send the source.
		changed = p.Eval(ctx, leaveLua, []string{h.keys.roomMembers(room), h.keys.roomHistory(room), h.keys.roomMode(room)}, user)
		p.SRem(ctx, h.keys.userRooms(user), room)
		return nil
	}
	var err error
	if h.cluster {
		// The two sets live in different slots, so no MULTI spans them. Both changes are
		// idempotent: a failure between them is repaired by repeating the call, which is
		// what a client does with a leave that got no ack or a DELETE that got no 204.
		_, err = h.rdb.Pipelined(ctx, change)
	} else {
		_, err = h.rdb.TxPipelined(ctx, change)
	}
	if err != nil {
		return false, fmt.Errorf("%w: leave %s from %s: %w", ErrUnavailable, user, room, err)
	}
	n, _ := changed.Int()
	return n == 1, nil
}

// Members returns the users in room, sorted; an empty or unknown room has none.
func (h *Hub) Members(ctx context.Context, room string) ([]string, error) {
	if !ValidID(room) {
		return nil, ErrInvalidID
	}
	return h.sortedSet(ctx, h.keys.roomMembers(room))
}

// Rooms returns the rooms user is in, sorted.
func (h *Hub) Rooms(ctx context.Context, user string) ([]string, error) {
	if !ValidID(user) {
		return nil, ErrInvalidID
	}
	return h.roomSet(ctx, h.keys.userRooms(user))
}

// IsMember reports whether user is a member of room, by the room's member set (the one
// PublishRoom reads).
func (h *Hub) IsMember(ctx context.Context, room, user string) (bool, error) {
	if !ValidID(room) || !ValidID(user) {
		return false, ErrInvalidID
	}
	ok, err := h.rdb.SIsMember(ctx, h.keys.roomMembers(room), user).Result()
	if err != nil {
		return false, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return ok, nil
}

func (h *Hub) sortedSet(ctx context.Context, key string) ([]string, error) {
	v, err := h.rdb.SMembers(ctx, key).Result()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	sort.Strings(v)
	return v, nil
}

// PublishRoom fans env out to every member of room (PublishRoomMessage) and returns the
// number of recipients. With requireMember, a sender (env.From) that is not a member fails
// with ErrNotMember; backends post without one.
func (h *Hub) PublishRoom(ctx context.Context, room string, env Envelope, requireMember bool) (int, error) {
	res, err := h.PublishRoomMessage(ctx, room, env, RoomSend{RequireMember: requireMember})
	return res.Recipients, err
}

// fanoutGroups splits members into groups that one script call delivers to: at most
// fanoutGroup members, and on Redis Cluster only members of one bucket, whose keys share a
// slot.
func (h *Hub) fanoutGroups(members []string) [][]string {
	return groupBy(members, fanoutGroup, h.groupKey)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// deliverGroups runs the delivery script once per group, all in one pipeline, and returns
// how many members could not be delivered to. Each call delivers the messages of tails, in
// order (one, or the sends of a room batch). On Redis Cluster go-redis splits the pipeline
// by node; each call touches one bucket's slot. With a room stream (historyKey, single
// Redis and a single group only) the call appends the messages to it too and their ids
// there are returned, one per tail.
func (h *Hub) deliverGroups(ctx context.Context, groups [][]string, tails []string, historyKey string) (failed int64, historyIDs []string, _ error) {
	cmds := make([]*redis.Cmd, len(groups))
	wait := h.pub.replicas.start(ctx)
	defer wait.checkRoom()
	observe := func(took time.Duration, err error) { h.obs.ObservePublish(took, len(groups), err) }
	key := func(i int) string { // a key of call i: its slot's
		if len(groups[i]) == 0 {
			return historyKey
		}
		return h.keys.userStream(groups[i][0])
	}
	args := make([]any, 0, 6+len(tails)-1)
	args = append(args, h.pub.historySize, h.pub.historyTTL, tails[0], h.pub.publishCmd, h.pub.deadline(), h.pub.roomHistorySize)
	for _, t := range tails[1:] {
		args = append(args, t)
	}
	wait.exec(h.rdb, len(groups), key, observe, func(pipe redis.Pipeliner, i int) (redis.Cmder, *redis.Script) {
		keys := make([]string, 0, 2*len(groups[i])+1)
		for _, u := range groups[i] {
			keys = append(keys, h.keys.userStream(u), h.keys.userChannel(u))
		}
		if historyKey != "" && i == 0 {
			keys = append(keys, historyKey)
		}
		cmds[i] = pipe.EvalSha(ctx, deliveryScript.Hash(), keys, args...)
		return cmds[i], deliveryScript
	})
	for _, cmd := range cmds {
		n, ids, err := fanoutAnswer(cmd, len(tails))
		if err != nil {
			return failed, historyIDs, fmt.Errorf("%w: fan out: %w", ErrUnavailable, err)
		}
		failed += n
		if ids != nil {
			historyIDs = ids
		}
	}
	return failed, historyIDs, nil
}

// fanoutAnswer reads the delivery script's answer to a call of n messages: a count of
// failed members, or with a room stream {count, the room stream's ids...}.
func fanoutAnswer(cmd *redis.Cmd, n int) (int64, []string, error) {
	v, err := cmd.Result()
	if err != nil {
		return 0, nil, err
	}
	switch v := v.(type) {
	case int64:
		return v, nil, nil
	case []any:
		if len(v) == n+1 {
			failed, ok := v[0].(int64)
			ids := make([]string, n)
			for i := range ids {
				id, isString := v[i+1].(string)
				ok = ok && isString
				ids[i] = id
			}
			if ok {
				return failed, ids, nil
			}
		}
	}
	return 0, nil, fmt.Errorf("the delivery script answered %v", v)
}

// roomLocks serializes a node's own fan-outs of a room before they contend for the Redis lock.
type roomLocks struct {
	mu    sync.Mutex
	rooms map[string]*roomLock
}

type roomLock struct {
	mu   sync.Mutex
	refs int
}

func (l *roomLocks) acquire(room string) func() {
	l.mu.Lock()
	if l.rooms == nil {
		l.rooms = make(map[string]*roomLock)
	}
	rl := l.rooms[room]
	if rl == nil {
		rl = &roomLock{}
		l.rooms[room] = rl
	}
	rl.refs++
	l.mu.Unlock()
	rl.mu.Lock()
	return func() {
		rl.mu.Unlock()
		l.mu.Lock()
		if rl.refs--; rl.refs == 0 {
			delete(l.rooms, room)
		}
		l.mu.Unlock()
	}
}

// releaseLua deletes a lock only if it still holds our token, so a fan-out that outlived
// its lease never releases someone else's lock.
var releaseLock = redis.NewScript(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`)

// lockRoom takes the room's fan-out lock: first this node's, then the cluster-wide one in
// Redis, waiting with jittered backoff while another node fans out.
func (h *Hub) lockRoom(ctx context.Context, room string) (func(), error) {
	unlockLocal := h.roomLocks.acquire(room)
	var b [16]byte
	_, _ = crand.Read(b[:])
	token := hex.EncodeToString(b[:])
	key := h.keys.roomLock(room)
	wait := time.Millisecond
	for {
		ok, err := h.rdb.SetNX(ctx, key, token, roomLockLease).Result()
		if err != nil {
			unlockLocal()
			return nil, fmt.Errorf("%w: lock room %s: %w", ErrUnavailable, room, err)
		}
		if ok {
			break
		}
		select {
		case <-ctx.Done():
			unlockLocal()
			return nil, fmt.Errorf("%w: room %s stayed locked: %w", ErrUnavailable, room, ctx.Err())
		case <-time.After(wait/2 + rand.N(wait/2+1)):
		}
		wait = min(2*wait, 50*time.Millisecond)
	}
	return func() {
		// Released with a context of its own: the caller's may have ended.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := releaseLock.Run(rctx, h.rdb, []string{key}, token).Err(); err != nil {
			h.log.Warn("releasing room lock failed; it expires by itself", "room", room, "err", err)
		}
		unlockLocal()
	}, nil
}
