package main

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-dev/switchboard/internal/wsclient"
)

// dmBuffer is how many frames may wait unread per connection, until its session takes
// them (then they are handled as they come); a small buffer keeps a thousand connections
// cheap.
const dmBuffer = 64

// lostSampleSize is how many lost message ids a report names.
const lostSampleSize = 5

// What the dm scenario knows about one message id of one user.
const (
	stateAccepted uint8 = 1 << iota // a 202 answer named it
	stateReceived                   // the user's connection delivered it
)

// dmUser is one user of the dm scenario: its connection, and what was accepted for it and
// delivered to it, by message id. The publishers and the session meet under mu, which is
// almost never contended: one user, one session, and a publisher now and then.
type dmUser struct {
	id   string
	path string // /v1/users/{id}/messages
	sess *session
	mu   sync.Mutex
	seen map[streamID]uint8
}

// dmRun is the state of one dm run.
type dmRun struct {
	cfg     config
	posters posterPool
	users   []*dmUser
	replies []chan wsclient.Frame // by publisher, with --via ws: the answers to its sends
	send    sendStats
	sess    sessionStats

	latency      Histogram // send timestamp to receipt
	delivered    atomic.Int64
	matched      atomic.Int64 // both accepted and delivered
	duplicated   atomic.Int64
	outOfOrder   atomic.Int64
	lastDelivery atomic.Int64 // unix nanoseconds
}

// runDM connects the users, sends direct messages by HTTP, and checks every delivery.
func runDM(ctx context.Context, cfg config, prog *progress) (*Result, error) {
	res := newResult(cfg)
	n, closeNodes, err := openNodes(ctx, cfg, prog)
	if err != nil {
		return nil, err
	}
	defer closeNodes()
	ids := userIDs(cfg.userPrefix, "u", cfg.users)
	cr, ok := n.connectForRun(ctx, cfg, prog, res, ids, "users", dmBuffer)
	if !ok {
		return res, nil
	}

	r := &dmRun{cfg: cfg, users: make([]*dmUser, len(ids))}
	publish := r.publish
	if cfg.via == "ws" {
		publish = r.publishWS
		r.replies = make([]chan wsclient.Frame, cfg.publishers)
		for i := range r.replies {
			r.replies[i] = make(chan wsclient.Frame, 1)
		}
	} else if r.posters, err = newPosterPool(cfg); err != nil {
		closeAll(cr.conns, cfg.dialers)
		return nil, err
	}
	perUser := expectedMessages(cfg)/int64(len(ids)) + 1
	opts := sessionOptions{nodes: n, buffer: dmBuffer, timeout: cfg.dialTimeout, stats: &r.sess}
	if cfg.via == "ws" {
		opts.onReply = r.onReply
	}
	recvCtx, stopRecv := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i, c := range cr.conns {
		u := &dmUser{
			id:   ids[i],
			path: "/v1/users/" + ids[i] + "/messages",
			sess: newSession(ids[i], i, c, cr.welcomes[i]),
			seen: make(map[streamID]uint8, min(perUser, 1<<16)),
		}
		r.users[i] = u
		wg.Go(func() { u.sess.run(recvCtx, opts, func(d delivery) { r.onDelivery(u, d) }) })
	}
	defer func() {
		stopRecv()
		wg.Wait()
	}()

	procs := watchProcs(cfg)
	start := time.Now()
	prog.printf("sending with %d publishers, %s", cfg.publishers, bounds(res.Params))
	elapsed, interrupted := sendPhase{
		send: &r.send, delivered: &r.delivered, sentNoun: "accepted", deliveredNoun: "delivered",
		publish: publish, posters: r.posters,
		done:        func() bool { return r.matched.Load() >= r.send.accepted.Load() },
		stopReaders: func() { stopRecv(); wg.Wait() },
	}.run(ctx, cfg, prog, start, "sent requests:")
	res.Interrupted = interrupted
	procs.fill(res, cfg, r.delivered.Load(), 0)

	res.Send = r.send.report(elapsed, cfg.rate)
	res.Delivery = r.report(start)
	res.Sessions = r.sess.report()
	res.Backend = n.backend.report()
	res.judge()
	return res, nil
}

// publish sends message seq to user seq mod U, on publisher pub's connection.
func (r *dmRun) publish(pub int, seq int64) {
	u := r.users[seq%int64(len(r.users))]
	now := time.Now()
	body := appendPayload(make([]byte, 0, r.cfg.payloadBytes+48), now.UnixNano(), seq, r.cfg.payloadBytes)
	status, answer, err := r.posters[pub].post(u.path, body)
	r.send.record(status, err, time.Since(now))
	if err != nil || status != http.StatusAccepted {
		return
	}
	idText, _ := idFromAnswer(answer)
	r.accepted(u, idText, "202 without an id")
}

// accepted records that the message idText for u was accepted (a 202, or an ack).
func (r *dmRun) accepted(u *dmUser, idText, missing string) {
	id, ok := parseStreamID(idText)
	if !ok {
		r.send.errors.add(missing)
		return
	}
	r.send.accepted.Add(1)
	u.mu.Lock()
	st := u.seen[id]
	u.seen[id] = st | stateAccepted
	u.mu.Unlock()
	if st&stateReceived != 0 {
		r.matched.Add(1)
	}
}

// onDelivery checks one delivery to u; it runs in u's session handler, one delivery at a
// time.
func (r *dmRun) onDelivery(u *dmUser, d delivery) {
	u.mu.Lock()
	st := u.seen[d.id]
	if st&stateReceived == 0 {
		u.seen[d.id] = st | stateReceived
	}
	u.mu.Unlock()
	if st&stateReceived != 0 {
		r.duplicated.Add(1)
		return
	}
	if !d.inOrder {
		r.outOfOrder.Add(1)
	}
	r.delivered.Add(1)
	if st&stateAccepted != 0 {
		r.matched.Add(1)
	}
	if d.sent > 0 {
		r.latency.Record(d.at - d.sent)
	}
	atomicMax(&r.lastDelivery, d.at)
}

func (r *dmRun) report(start time.Time) *DeliveryReport {
	accepted, matched, delivered := r.send.accepted.Load(), r.matched.Load(), r.delivered.Load()
	d := &DeliveryReport{
		Expected:   accepted,
		Delivered:  delivered,
		Lost:       accepted - matched,
		Duplicated: r.duplicated.Load(),
		OutOfOrder: r.outOfOrder.Load(),
		Unexpected: delivered - matched,
		Latency:    r.latency.Summary(),
	}
	if last := r.lastDelivery.Load(); last > 0 {
		el := time.Duration(last - start.UnixNano())
		d.Seconds = round3(el.Seconds())
		d.PerSecond = perSecond(delivered, el)
	}
	if d.Lost > 0 {
		for _, u := range r.users {
			u.mu.Lock()
			for id, st := range u.seen {
				if st == stateAccepted && len(d.LostSample) < lostSampleSize {
					d.LostSample = append(d.LostSample, u.id+" "+id.String())
				}
			}
			u.mu.Unlock()
		}
	}
	return d
}

// expectedMessages estimates how many messages a run sends, to size its tables.
func expectedMessages(cfg config) int64 {
	switch {
	case cfg.count > 0:
		return cfg.count
	case cfg.rate > 0:
		return int64(cfg.rate * cfg.duration.Seconds())
	}
	return 0
}

// waitUntil polls cond until it holds or d has passed, and reports whether it held.
func waitUntil(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if !time.Now().Before(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond) // polling interval
	}
	return true
}
