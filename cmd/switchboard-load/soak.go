package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// soakBuffer is the per-connection frame buffer of the soak's users: a big room's member
// receives every post to it besides its DMs.
const soakBuffer = 64

// soakUser is one user of the soak: its DMs are checked as the dm scenario checks them,
// its room posts by sequence number in roomSeen, a bitset touched only by its session.
type soakUser struct {
	dm       *dmUser
	roomSeen []uint64
}

// soakRoom is one room the soak posts to.
type soakRoom struct {
	name    string
	path    string // /v1/rooms/{name}/messages
	members []string
}

// soakPost is one room post: when it was sent, to which room, how many members got it.
type soakPost struct {
	sent      int64
	room      int
	accepted  atomic.Bool
	delivered atomic.Int32
}

// soakRun is the state of one soak run. DMs go through a dmRun, which tracks them by id;
// room posts are tracked here by sequence number, as the fanout scenario does.
type soakRun struct {
	cfg     config
	dm      *dmRun
	users   []*soakUser
	rooms   []soakRoom
	byName  map[string]int // room name -> index in rooms
	posters posterPool     // room publishers

	mu    sync.RWMutex
	posts []*soakPost // by sequence number

	roomSend       sendStats
	roomLatency    Histogram
	roomDelivered  atomic.Int64
	bigDelivered   atomic.Int64 // of roomDelivered, through a big room
	roomDuplicated atomic.Int64
	roomOutOfOrder atomic.Int64
	roomUnexpected atomic.Int64
	recipientsOff  atomic.Int64 // 202s whose recipients differ from the room's members

	disconnects atomic.Int64
	kills       atomic.Int64 // CLIENT KILL commands that succeeded
	killed      atomic.Int64 // Pub/Sub connections they closed
	killErrors  tally
}

// runSoak runs the soak scenario: a steady mixed load with churn and Pub/Sub link kills,
// sampling the server as it goes.
func runSoak(ctx context.Context, cfg config, prog *progress) (*Result, error) {
	res := newResult(cfg)
	var rdb *redis.Client
	if cfg.soak.redisAddr != "" && cfg.soak.killEvery > 0 {
		var err error
		if rdb, err = openRedis(ctx, cfg.soak.redisAddr); err != nil {
			return nil, err
		}
		defer rdb.Close()
	} else if cfg.soak.killEvery > 0 {
		res.Warnings = append(res.Warnings, "the Pub/Sub link was not killed: no --redis-addr")
	}
	n, closeNodes, err := openNodes(ctx, cfg, prog)
	if err != nil {
		return nil, err
	}
	defer closeNodes()

	ids := userIDs(cfg.userPrefix, "u", cfg.users)
	r := &soakRun{cfg: cfg, users: make([]*soakUser, len(ids)), byName: map[string]int{}}
	r.rooms = soakRooms(cfg, ids)
	for i, room := range r.rooms {
		r.byName[room.name] = i
		prog.printf("adding %d members to room %s", len(room.members), room.name)
		if err := changeMembers(ctx, n, true, room.name, room.members); err != nil {
			return nil, fmt.Errorf("adding members to %s: %w", room.name, err)
		}
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		for _, room := range r.rooms {
			if err := changeMembers(ctx, n, false, room.name, room.members); err != nil {
				prog.printf("warning: emptying room %s: %v", room.name, err)
			}
		}
	}()

	cr, ok := n.connectForRun(ctx, cfg, prog, res, ids, "users", soakBuffer)
	if !ok {
		return res, nil
	}
	r.dm = &dmRun{cfg: cfg, users: make([]*dmUser, len(ids))}
	if r.dm.posters, err = newPosterPool(cfg); err != nil {
		closeAll(cr.conns, cfg.dialers)
		return nil, err
	}
	roomCfg := cfg
	roomCfg.publishers = cfg.soak.roomPublishers
	if r.posters, err = newPosterPool(roomCfg); err != nil {
		closeAll(cr.conns, cfg.dialers)
		return nil, err
	}

	perUser := expectedMessages(cfg)/int64(len(ids)) + 1
	opts := sessionOptions{nodes: n, buffer: soakBuffer, timeout: cfg.dialTimeout, stats: &r.dm.sess, offline: cfg.soak.offline}
	recvCtx, stopRecv := context.WithCancel(context.Background())
	var readers sync.WaitGroup
	for i, c := range cr.conns {
		u := &soakUser{dm: &dmUser{
			id:   ids[i],
			path: "/v1/users/" + ids[i] + "/messages",
			sess: newSession(ids[i], i, c, cr.welcomes[i]),
			seen: make(map[streamID]uint8, min(perUser, 1<<16)),
		}}
		r.users[i], r.dm.users[i] = u, u.dm
		readers.Go(func() { u.dm.sess.run(recvCtx, opts, func(d delivery) { r.onDelivery(u, d) }) })
	}
	stopReaders := func() {
		stopRecv()
		readers.Wait()
	}
	defer stopReaders()

	// One post to each room first, while every member is connected and nobody churns: a
	// room of the server's big-room threshold turns big at its first post, and a member
	// away at that moment would come back without the room's position and start at its
	// newest message (docs/protocol.md, "Big rooms"), missing what was posted meanwhile.
	// The soak is about the steady state; the turn is not part of it.
	warmup := int64(0)
	if cfg.soak.firstPosts && cfg.soak.roomRate > 0 && len(r.rooms) > 0 {
		prog.printf("one post to each of %d rooms first, with every member connected", len(r.rooms))
		for warmup < int64(len(r.rooms)) {
			r.publishRoom(0, warmup)
			warmup++
		}
		if !waitUntil(cfg.grace, r.done) {
			prog.printf("warning: the first posts did not reach every member within %s", cfg.grace)
		}
	}

	procs := watchProcs(cfg)
	start := time.Now()
	smp := newSampler(cfg, n, start)
	smp.take(ctx, r, prog, "baseline")
	prog.printf("soaking for %s: %g DMs/s, %g room posts/s, %g disconnects/s, Pub/Sub killed every %s",
		cfg.duration, cfg.rate, cfg.soak.roomRate, cfg.soak.churnRate, killEvery(cfg, rdb))

	// The side loads (churn, kills, samples) run until the sending ends.
	sideCtx, stopSide := context.WithCancel(ctx)
	var side sync.WaitGroup
	side.Go(func() { r.churn(sideCtx) })
	if rdb != nil {
		side.Go(func() { r.killPubSub(sideCtx, rdb) })
	}
	side.Go(func() { smp.every(sideCtx, r, prog) })

	var senders sync.WaitGroup
	var elapsed, roomElapsed time.Duration
	senders.Go(func() {
		elapsed = publishers(ctx, cfg.publishers, newPacer(start, cfg.duration, cfg.rate, 0), r.dm.publish)
	})
	if cfg.soak.roomRate > 0 && len(r.rooms) > 0 {
		senders.Go(func() {
			roomElapsed = publishers(ctx, cfg.soak.roomPublishers, newPacer(start, cfg.duration, cfg.soak.roomRate, 0), func(pub int, seq int64) {
				r.publishRoom(pub, seq+warmup) // after the first posts, in the same turn of rooms
			})
		})
	}
	senders.Wait()
	stopSide()
	side.Wait()
	r.dm.posters.close()
	r.posters.close()
	res.Interrupted = ctx.Err() != nil

	// Every session comes back from its last disconnect within --offline; the grace counts
	// from there.
	prog.printf("sent %d DMs and %d room posts; waiting up to %s for the last deliveries", r.dm.send.requests.Load(), r.roomSend.requests.Load(), cfg.grace)
	waitUntil(cfg.grace+cfg.soak.offline, r.done)
	smp.take(context.WithoutCancel(ctx), r, prog, "end")
	stopReaders()
	procs.fill(res, cfg, r.dm.delivered.Load()+r.roomDelivered.Load(), 0)

	res.Send = r.dm.send.report(elapsed, cfg.rate)
	res.Delivery = r.dm.report(start)
	res.Sessions = r.dm.sess.report()
	res.Soak = r.report(start, roomElapsed, smp)
	res.judgeSoak()
	res.judge()
	return res, nil
}

// openRedis connects to the Redis the nodes use, to kill their Pub/Sub connections.
func openRedis(ctx context.Context, addr string) (*redis.Client, error) {
	var opts *redis.Options
	if strings.Contains(addr, "://") {
		var err error
		if opts, err = redis.ParseURL(addr); err != nil {
			return nil, fmt.Errorf("--redis-addr: %w", err)
		}
	} else {
		opts = &redis.Options{Addr: addr}
	}
	rdb := redis.NewClient(opts)
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := rdb.Ping(pctx).Err(); err != nil {
		rdb.Close()
		return nil, fmt.Errorf("cannot reach Redis at --redis-addr %s: %w", addr, err)
	}
	return rdb, nil
}

func killEvery(cfg config, rdb *redis.Client) string {
	if rdb == nil {
		return "never"
	}
	return cfg.soak.killEvery.String()
}

// soakRooms lays out the rooms: the small ones over consecutive users, wrapping around,
// and the big one over the first --big-room-members users.
func soakRooms(cfg config, ids []string) []soakRoom {
	var rooms []soakRoom
	add := func(name string, members []string) {
		rooms = append(rooms, soakRoom{name: name, path: "/v1/rooms/" + name + "/messages", members: members})
	}
	if cfg.soak.roomMembers > 0 {
		for i := range cfg.soak.rooms {
			members := make([]string, cfg.soak.roomMembers)
			for j := range members {
				members[j] = ids[(i*cfg.soak.roomMembers+j)%len(ids)]
			}
			add(fmt.Sprintf("%s-room%d", cfg.userPrefix, i), members)
		}
	}
	if cfg.soak.bigRoomMembers > 0 {
		add(cfg.userPrefix+"-big", ids[:cfg.soak.bigRoomMembers])
	}
	return rooms
}

// publishRoom posts message seq to room seq mod R, on room publisher pub's connection.
func (r *soakRun) publishRoom(pub int, seq int64) {
	now := time.Now()
	p := &soakPost{sent: now.UnixNano(), room: int(seq % int64(len(r.rooms)))}
	r.mu.Lock()
	for int64(len(r.posts)) <= seq {
		r.posts = append(r.posts, nil)
	}
	r.posts[seq] = p
	r.mu.Unlock()

	body := appendPayload(make([]byte, 0, r.cfg.payloadBytes+48), p.sent, seq, r.cfg.payloadBytes)
	status, answer, err := r.posters[pub].post(r.rooms[p.room].path, body)
	r.roomSend.record(status, err, time.Since(now))
	if err != nil || status != http.StatusAccepted {
		return
	}
	var a struct {
		Recipients *int `json:"recipients"`
	}
	if json.Unmarshal(answer, &a) != nil || a.Recipients == nil {
		r.roomSend.errors.add("202 without recipients")
		return
	}
	if *a.Recipients != len(r.rooms[p.room].members) {
		r.recipientsOff.Add(1)
	}
	p.accepted.Store(true)
	r.roomSend.accepted.Add(1)
}

// post returns the room post with sequence number seq, or nil if the tool sent none.
func (r *soakRun) post(seq int64) *soakPost {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if seq < 0 || seq >= int64(len(r.posts)) {
		return nil
	}
	return r.posts[seq]
}

// onDelivery checks one delivery to u; it runs in u's session handler, one delivery at a
// time.
func (r *soakRun) onDelivery(u *soakUser, d delivery) {
	if d.room == "" {
		r.dm.onDelivery(u.dm, d)
		return
	}
	p := r.post(d.seq)
	if room, ok := r.byName[d.room]; !ok || p == nil || p.room != room {
		r.roomUnexpected.Add(1)
		return
	}
	word, bit := d.seq/64, uint64(1)<<(d.seq%64)
	for int64(len(u.roomSeen)) <= word {
		u.roomSeen = append(u.roomSeen, 0)
	}
	if u.roomSeen[word]&bit != 0 {
		r.roomDuplicated.Add(1)
		return
	}
	u.roomSeen[word] |= bit
	if !d.inOrder {
		r.roomOutOfOrder.Add(1)
	}
	r.roomDelivered.Add(1)
	if d.big {
		r.bigDelivered.Add(1)
	}
	r.roomLatency.Record(d.at - p.sent)
	p.delivered.Add(1)
}

// missingRoom returns the deliveries of accepted room posts not yet seen, and a few of
// the posts they belong to.
func (r *soakRun) missingRoom(sample int) (deliveries int64, posts []string) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for seq, p := range r.posts {
		if p == nil || !p.accepted.Load() {
			continue
		}
		want := int32(len(r.rooms[p.room].members))
		if got := p.delivered.Load(); got < want {
			deliveries += int64(want - got)
			if len(posts) < sample {
				posts = append(posts, fmt.Sprintf("post %d to %s reached %d of %d", seq, r.rooms[p.room].name, got, want))
			}
		}
	}
	return deliveries, posts
}

// done reports whether every user is connected again and every accepted DM and room
// post has been delivered everywhere.
func (r *soakRun) done() bool {
	if r.dm.matched.Load() < r.dm.send.accepted.Load() {
		return false
	}
	for _, u := range r.users {
		if u.dm.sess.live.Load() == nil {
			return false
		}
	}
	lost, _ := r.missingRoom(0)
	return lost == 0
}

// churn closes a random user's connection --churn-rate times a second; the user stays
// away up to --offline, then resumes after the last message it saw.
func (r *soakRun) churn(ctx context.Context) {
	if r.cfg.soak.churnRate <= 0 {
		return
	}
	t := time.NewTicker(time.Duration(float64(time.Second) / r.cfg.soak.churnRate))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if r.users[rand.N(len(r.users))].dm.sess.disconnect() {
				r.disconnects.Add(1)
			}
		}
	}
}

// killPubSub closes every Pub/Sub connection of the Redis the nodes use, every
// --kill-pubsub-every: each node must rebuild its link and catch up from the streams.
func (r *soakRun) killPubSub(ctx context.Context, rdb *redis.Client) {
	t := time.NewTicker(r.cfg.soak.killEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			kctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			n, err := rdb.ClientKillByFilter(kctx, "TYPE", "pubsub").Result()
			cancel()
			if err != nil {
				if ctx.Err() == nil {
					r.killErrors.add(errorClass(err))
				}
				continue
			}
			r.kills.Add(1)
			r.killed.Add(n)
		}
	}
}
