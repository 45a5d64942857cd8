package events

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"
)

// Presence counts every user's open connections across nodes and devices in Redis, and
// queues user.online when a user's first connection anywhere opens and user.offline when
// its last one closes. Each count change and the event it causes are one script in one
// slot (the user's shard), so exactly one of any number of racing calls sees a 0→1 or 1→0
// transition, and the event can neither be lost nor sent for a change that did not happen.
//
// Connections are named, not just counted: a call whose answer was lost (ErrUnavailable)
// can be repeated without counting a connection twice, and a Disconnected for a Connected
// that never took effect does nothing.
type Presence struct {
	q     *Queue
	calls *scriptBatcher // a connect storm's calls share round trips
}

// nodeGoneChunk is how many users one NodeGone script handles, keeping each call short.
const nodeGoneChunk = 100

// Connected records connection conn (unique on node, any non-empty string up to 128 bytes)
// of user on node, and queues user.online if it is the user's first connection anywhere.
// Call it before the connection counts as open, and call Disconnected once it closes; it
// is safe to repeat after an error.
func (p *Presence) Connected(ctx context.Context, user, node, conn string) error {
	return p.change(ctx, connectScript, UserOnline, user, node, conn)
}

// Disconnected forgets connection conn of user on node, and queues user.offline if it was
// the user's last connection anywhere. It is safe to repeat, and does nothing for a
// connection that is not counted (never connected, or removed by NodeGone).
func (p *Presence) Disconnected(ctx context.Context, user, node, conn string) error {
	return p.change(ctx, disconnectScript, UserOffline, user, node, conn)
}

func (p *Presence) change(ctx context.Context, script *redis.Script, typ Type, user, node, conn string) error {
	if !validID(user) || !validID(node) || conn == "" || len(conn) > maxIDLength {
		return fmt.Errorf("%w: presence of user %q on node %q, connection %q", ErrInvalidEvent, user, node, conn)
	}
	q := p.q
	s := q.keys.shard(user)
	now := time.Now()
	var ev []byte
	if q.enabled() {
		var err error
		if ev, err = (Event{ID: newID(), Type: typ, User: user, Node: node, Time: now}).MarshalJSON(); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidEvent, err)
		}
	}
	keys := append(q.keys.queue(s), q.keys.presence(s, user), q.keys.nodeUsers(s, node), q.keys.nodes(s))
	args := append(make([]any, 0, len(q.limits)+5), q.limits...)
	if typ == UserOnline {
		args = append(args, node+"/"+conn, now.UnixMilli(), user, node, ev)
	} else {
		args = append(args, node+"/"+conn, user, node, ev)
	}
	res, err := p.calls.run(ctx, script, keys, args...)
	if err != nil {
		return fmt.Errorf("%w: presence of %s on %s: %w", ErrUnavailable, user, node, err)
	}
	if res[0] == 1 && q.enabled() {
		q.counted(s, 1, res[1])
	}
	return nil
}

// NodeGone forgets every connection that node held, for a surviving node to call when
// node's registry entry expired (it crashed or was cut off), and queues user.offline for
// each user left with no connection anywhere. It returns how many users went offline. It
// is safe to repeat and to run on several nodes at once: each user is handled exactly once.
// A node whose id may be reused by its next process should also call it for its own id at
// startup, before accepting connections, to clear what its previous process left.
//
// A dead node's users are found in per-shard sets kept by Connected and Disconnected in the
// users' own slots, so the whole cleanup is a few atomic single-slot scripts per shard and
// never a cross-slot step that a crash could leave half done.
func (p *Presence) NodeGone(ctx context.Context, node string) (int, error) {
	if !validID(node) {
		return 0, fmt.Errorf("%w: node %q", ErrInvalidEvent, node)
	}
	q := p.q
	offline := 0
	for s := range q.cfg.Shards {
		set := q.keys.nodeUsers(s, node)
		for {
			users, err := q.rdb.SRandMemberN(ctx, set, nodeGoneChunk).Result()
			if err != nil {
				return offline, fmt.Errorf("%w: users of node %s: %w", ErrUnavailable, node, err)
			}
			if len(users) == 0 {
				break
			}
			n, left, err := p.nodeGone(ctx, s, node, users)
			offline += n
			if err != nil {
				return offline, err
			}
			if left == 0 {
				break
			}
		}
	}
	return offline, nil
}

// nodeGone runs the cleanup script for some users of node in shard s, returning how many
// went offline and how many users of the node remain in the shard.
func (p *Presence) nodeGone(ctx context.Context, s int, node string, users []string) (offline int, left int64, err error) {
	q := p.q
	keys := append(make([]string, 0, 5+len(users)), q.keys.queue(s)...)
	keys = append(keys, q.keys.nodeUsers(s, node), q.keys.nodes(s))
	args := append(make([]any, 0, len(q.limits)+1+2*len(users)), q.limits...)
	args = append(args, node)
	now := time.Now()
	for _, u := range users {
		keys = append(keys, q.keys.presence(s, u))
		var ev []byte
		if q.enabled() {
			e := Event{ID: newID(), Type: UserOffline, User: u, Node: node, Time: now, Reason: ReasonNodeGone}
			if ev, err = e.MarshalJSON(); err != nil {
				return 0, 0, fmt.Errorf("%w: %w", ErrInvalidEvent, err)
			}
		}
		args = append(args, u, ev)
	}
	res, err := nodeGoneScript.Run(ctx, q.rdb, keys, args...).Int64Slice()
	if err != nil {
		return 0, 0, fmt.Errorf("%w: connections of node %s: %w", ErrUnavailable, node, err)
	}
	if res[0] > 0 && q.enabled() {
		q.counted(s, res[0], res[1])
	}
	return int(res[0]), res[2], nil
}

// counted accounts for n presence events of shard s, of which refused did not fit in the
// queue: the presence change stands, and only its event is lost (and counted).
func (q *Queue) counted(s int, n, refused int64) {
	if refused > 0 {
		q.refused(s, reasonQueueBytes, refused)
	}
	if n > refused {
		q.queued(s, n-refused)
	}
}

// Online returns how many connections user has open anywhere in the deployment, for the
// presence endpoint; the user is online when it is above zero. Connections of a dead node
// count until NodeGone removes them.
func (p *Presence) Online(ctx context.Context, user string) (int, error) {
	if !validID(user) {
		return 0, fmt.Errorf("%w: user %q", ErrInvalidEvent, user)
	}
	n, err := p.q.rdb.HLen(ctx, p.q.keys.presence(p.q.keys.shard(user), user)).Result()
	if err != nil {
		return 0, fmt.Errorf("%w: presence of %s: %w", ErrUnavailable, user, err)
	}
	return int(n), nil
}

// Nodes returns, sorted, every node that holds at least one counted connection. A node
// that compares it with its registry of live nodes can call NodeGone for the rest, so that
// even a node that died unnoticed (its registry entry expired while no one watched) does
// not leave its users online forever.
func (p *Presence) Nodes(ctx context.Context) ([]string, error) {
	q := p.q
	cmds := make([]*redis.StringSliceCmd, q.cfg.Shards)
	_, err := q.rdb.Pipelined(ctx, func(pl redis.Pipeliner) error {
		for s := range cmds {
			cmds[s] = pl.SMembers(ctx, q.keys.nodes(s))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: nodes with connections: %w", ErrUnavailable, err)
	}
	var nodes []string
	for _, c := range cmds {
		nodes = append(nodes, c.Val()...)
	}
	slices.Sort(nodes)
	return slices.Compact(nodes), nil
}
