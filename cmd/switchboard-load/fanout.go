package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-dev/switchboard/client"
)

// fanoutBuffer is the per-connection frame buffer of room members. Every post reaches every
// member at once, so a member briefly holds one frame per post in flight.
const fanoutBuffer = 64

// memberWorkers bounds the concurrent membership requests.
const memberWorkers = 32

// fanMsg is one room post: when it was sent and how many members have received it.
type fanMsg struct {
	sent      int64 // unix nanoseconds, as in the payload
	accepted  atomic.Bool
	delivered atomic.Int32 // distinct members
}

// fanMember is one room member. seen is a bitset of the sequence numbers it received,
// touched only by its session's handler, one frame at a time: an eighth of a byte per post
// per member.
type fanMember struct {
	sess *session
	seen []uint64
}

// fanoutRun is the state of one fanout run.
type fanoutRun struct {
	cfg      config
	posters  posterPool
	members  []*fanMember
	postPath string

	mu   sync.RWMutex
	msgs []*fanMsg // by sequence number

	send         sendStats
	sess         sessionStats
	latency      Histogram // post to each delivery
	complete     Histogram // post to its last member's delivery
	delivered    atomic.Int64
	duplicated   atomic.Int64
	outOfOrder   atomic.Int64
	unexpected   atomic.Int64
	lastDelivery atomic.Int64
	recipMin     atomic.Int64
	recipMax     atomic.Int64
}

// runFanout fills a room, connects its members, posts to it and checks every delivery.
func runFanout(ctx context.Context, cfg config, prog *progress) (*Result, error) {
	res := newResult(cfg)
	n, closeNodes, err := openNodes(ctx, cfg, prog)
	if err != nil {
		return nil, err
	}
	defer closeNodes()
	ids := userIDs(cfg.userPrefix, "m", cfg.members)
	prog.printf("adding %d members to room %s", len(ids), cfg.room)
	if err := changeMembers(ctx, n, true, cfg.room, ids); err != nil {
		return nil, fmt.Errorf("adding members to %s: %w", cfg.room, err)
	}
	// The room outlives the run unless it is emptied; a failure here changes no result.
	defer func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := changeMembers(ctx, n, false, cfg.room, ids); err != nil {
			prog.printf("warning: emptying room %s: %v", cfg.room, err)
		}
	}()

	cr, ok := n.connectForRun(ctx, cfg, prog, res, ids, "members", fanoutBuffer)
	if !ok {
		return res, nil
	}

	posters, err := newPosterPool(cfg)
	if err != nil {
		return nil, err
	}
	r := &fanoutRun{cfg: cfg, posters: posters, members: make([]*fanMember, len(ids)), postPath: "/v1/rooms/" + cfg.room + "/messages"}
	r.recipMin.Store(math.MaxInt64)
	opts := sessionOptions{nodes: n, buffer: fanoutBuffer, timeout: cfg.dialTimeout, stats: &r.sess}
	recvCtx, stopRecv := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i, c := range cr.conns {
		m := &fanMember{sess: newSession(ids[i], i, c, cr.welcomes[i])}
		r.members[i] = m
		wg.Go(func() { m.sess.run(recvCtx, opts, func(d delivery) { r.onDelivery(m, d) }) })
	}
	defer func() {
		stopRecv()
		wg.Wait()
	}()

	procs := watchProcs(cfg)
	start := time.Now()
	prog.printf("posting with %d publishers, %s", cfg.publishers, bounds(res.Params))
	elapsed, interrupted := sendPhase{
		send: &r.send, delivered: &r.delivered, sentNoun: "posts accepted", deliveredNoun: "deliveries",
		publish: r.publish, posters: posters,
		done:        func() bool { lost, _ := r.missing(); return lost == 0 },
		stopReaders: func() { stopRecv(); wg.Wait() },
	}.run(ctx, cfg, prog, start, "posted:")
	res.Interrupted = interrupted
	procs.fill(res, cfg, r.delivered.Load(), 0)

	res.Send = r.send.report(elapsed, cfg.rate)
	if lo, hi := r.recipMin.Load(), r.recipMax.Load(); hi > 0 {
		res.Send.RecipientsMin, res.Send.RecipientsMax = int(lo), int(hi)
		if lo != int64(len(ids)) || hi != int64(len(ids)) {
			res.Warnings = append(res.Warnings, fmt.Sprintf("the server counted %d to %d recipients per post for a room of %d", lo, hi, len(ids)))
		}
	}
	res.Delivery = r.report(start)
	res.Sessions = r.sess.report()
	res.judge()
	return res, nil
}

// changeMembers adds (join) or removes every user of the room, through the API client: a
// membership change is idempotent, so the client retries it after a 503.
func changeMembers(ctx context.Context, n *nodes, join bool, room string, users []string) error {
	var next atomic.Int64
	var failures tally
	var wg sync.WaitGroup
	for range min(memberWorkers, len(users)) {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= len(users) {
					return
				}
				var err error
				if join {
					err = n.apiClient(i).AddMember(ctx, room, users[i])
				} else {
					err = n.apiClient(i).RemoveMember(ctx, room, users[i])
				}
				var refused *client.Error
				switch {
				case errors.As(err, &refused):
					failures.add(fmt.Sprintf("%d %s: %s", refused.Status, refused.Code, refused.Message))
				case err != nil:
					failures.add(errorClass(err))
				}
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	if n := failures.total(); n > 0 {
		return fmt.Errorf("%d of %d requests failed: %s", n, len(users), formatTally(failures.snapshot()))
	}
	return nil
}

// publish posts message seq to the room on publisher pub's connection.
func (r *fanoutRun) publish(pub int, seq int64) {
	now := time.Now()
	m := &fanMsg{sent: now.UnixNano()}
	r.mu.Lock()
	for int64(len(r.msgs)) <= seq {
		r.msgs = append(r.msgs, nil)
	}
	r.msgs[seq] = m
	r.mu.Unlock()

	body := appendPayload(make([]byte, 0, r.cfg.payloadBytes+48), m.sent, seq, r.cfg.payloadBytes)
	status, answer, err := r.posters[pub].post(r.postPath, body)
	r.send.record(status, err, time.Since(now))
	if err != nil || status != http.StatusAccepted {
		return
	}
	var a struct {
		Recipients *int64 `json:"recipients"`
	}
	if json.Unmarshal(answer, &a) != nil || a.Recipients == nil {
		r.send.errors.add("202 without recipients")
		return
	}
	m.accepted.Store(true)
	r.send.accepted.Add(1)
	atomicMax(&r.recipMax, *a.Recipients)
	for cur := r.recipMin.Load(); *a.Recipients < cur && !r.recipMin.CompareAndSwap(cur, *a.Recipients); cur = r.recipMin.Load() {
	}
}

// msg returns the post with sequence number seq, or nil if the tool sent none.
func (r *fanoutRun) msg(seq int64) *fanMsg {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if seq < 0 || seq >= int64(len(r.msgs)) {
		return nil
	}
	return r.msgs[seq]
}

// onDelivery checks one delivery to member m; it runs in m's session handler, one delivery
// at a time.
func (r *fanoutRun) onDelivery(m *fanMember, d delivery) {
	msg := r.msg(d.seq)
	if msg == nil {
		r.unexpected.Add(1)
		return
	}
	word, bit := d.seq/64, uint64(1)<<(d.seq%64)
	for int64(len(m.seen)) <= word {
		m.seen = append(m.seen, 0)
	}
	if m.seen[word]&bit != 0 {
		r.duplicated.Add(1)
		return
	}
	m.seen[word] |= bit
	if !d.inOrder {
		r.outOfOrder.Add(1)
	}
	r.delivered.Add(1)
	r.latency.Record(d.at - msg.sent)
	if msg.delivered.Add(1) == int32(len(r.members)) {
		r.complete.Record(d.at - msg.sent)
	}
	atomicMax(&r.lastDelivery, d.at)
}

// missing returns the deliveries of accepted posts not yet seen, and how many accepted
// posts they belong to.
func (r *fanoutRun) missing() (deliveries, posts int64) {
	want := int32(len(r.members))
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, m := range r.msgs {
		if m != nil && m.accepted.Load() {
			if got := m.delivered.Load(); got < want {
				deliveries += int64(want - got)
				posts++
			}
		}
	}
	return deliveries, posts
}

func (r *fanoutRun) report(start time.Time) *DeliveryReport {
	lost, incomplete := r.missing()
	complete := r.complete.Summary()
	d := &DeliveryReport{
		Expected:   r.send.accepted.Load() * int64(len(r.members)),
		Delivered:  r.delivered.Load(),
		Lost:       lost,
		Duplicated: r.duplicated.Load(),
		OutOfOrder: r.outOfOrder.Load(),
		Unexpected: r.unexpected.Load(),
		Latency:    r.latency.Summary(),
		Complete:   &complete,
		Incomplete: incomplete,
	}
	if last := r.lastDelivery.Load(); last > 0 {
		el := time.Duration(last - start.UnixNano())
		d.Seconds = round3(el.Seconds())
		d.PerSecond = perSecond(d.Delivered, el)
	}
	if lost > 0 {
		r.mu.RLock()
		for seq, m := range r.msgs {
			if m != nil && m.accepted.Load() && m.delivered.Load() < int32(len(r.members)) && len(d.LostSample) < lostSampleSize {
				d.LostSample = append(d.LostSample, fmt.Sprintf("post %d reached %d of %d", seq, m.delivered.Load(), len(r.members)))
			}
		}
		r.mu.RUnlock()
	}
	return d
}
