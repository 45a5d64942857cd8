package subscriptions

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard-dev/switchboard/internal/pipeline"
)

//go:embed batch.lua
var batchLua string

// batchScript delivers many different messages in one call: the publisher's batches and
// POST /v1/messages. It is loaded at startup and called by its SHA inside pipelines, where
// go-redis has no EVAL fallback (see pipeline.Scripts).
var batchScript = redis.NewScript(batchLua)

// maxPipeline bounds how many deliveries share one round trip, and batchGroup how many one
// script call delivers.
const (
	maxPipeline = 512
	batchGroup  = 64
)

// Publish delivers env to user: the message is appended to the user's stream and published on
// the user's channel in one atomic step, so it reaches every connection of the user on every
// node, and a client that was away finds it when it resumes. It returns the message id.
// An error wrapping ErrUnavailable means Redis did not take the message.
func (h *Hub) Publish(ctx context.Context, user string, env Envelope) (StreamID, error) {
	if !ValidID(user) || !env.validIDs() {
		return StreamID{}, ErrInvalidID
	}
	if err := ctx.Err(); err != nil {
		return StreamID{}, err
	}
	d, err := h.pub.do(ctx, delivery{stream: h.keys.userStream(user), channel: h.keys.userChannel(user),
		bucket: h.groupKey(user), tail: env.tail()})
	if err != nil {
		return StreamID{}, err
	}
	id, err := ParseStreamID(d.id)
	if err == nil && d.unreplicated {
		err = ErrNotReplicated
	}
	return id, err
}

// Direct is one direct message of a batch.
type Direct struct {
	User     string
	Envelope Envelope
}

// PublishMany delivers a batch of direct messages in few round trips: one script call
// delivers up to 64 of them (on Redis Cluster, 64 of one bucket), and the calls go out in
// pipelines, one after the other. It returns one id or one error per message, in order;
// messages to one user are stored in batch order.
func (h *Hub) PublishMany(ctx context.Context, msgs []Direct) ([]StreamID, []error) {
	sent, errs := h.publishMany(ctx, msgs, nil)
	ids := make([]StreamID, len(sent))
	for i := range sent {
		ids[i] = sent[i].ID
	}
	return ids, errs
}

// publishMany is PublishMany, and with idem PublishManyIdempotent.
func (h *Hub) publishMany(ctx context.Context, msgs []Direct, idem *Idempotency) ([]Sent, []error) {
	sent := make([]Sent, len(msgs))
	errs := make([]error, len(msgs))
	ds := make([]delivery, len(msgs))
	var live []*delivery
	for i, m := range msgs {
		if !ValidID(m.User) || !m.Envelope.validIDs() {
			errs[i] = ErrInvalidID
			continue
		}
		env := m.Envelope
		ds[i] = delivery{stream: h.keys.userStream(m.User), channel: h.keys.userChannel(m.User),
			bucket: h.groupKey(m.User)}
		if idem != nil {
			h.dmRecord(&ds[i], m.User, "b"+strconv.Itoa(i), *idem)
			if env.Dedupe == "" {
				env.Dedupe = ds[i].record
			}
		}
		ds[i].tail = env.tail()
		live = append(live, &ds[i])
	}
	if err := ctx.Err(); err != nil {
		for i := range errs {
			errs[i] = err
		}
		return sent, errs
	}
	// Its own pipelines, one after the other, rather than the shared batcher: a batch of
	// it could be split between two of the batcher's, out of the batch's order.
	for start := 0; start < len(live); start += maxPipeline {
		h.pub.exec(ctx, live[start:min(start+maxPipeline, len(live))])
	}
	for i := range ds {
		if errs[i] != nil {
			continue
		}
		if ds[i].err != nil {
			errs[i] = ds[i].err
			continue
		}
		sent[i].Replayed = ds[i].replayed
		sent[i].ID, errs[i] = ParseStreamID(ds[i].id)
		if errs[i] == nil && ds[i].unreplicated {
			errs[i] = ErrNotReplicated
		}
	}
	return sent, errs
}

// delivery is one append+publish and, once sent, its outcome.
type delivery struct {
	stream, channel string
	bucket          int // groups deliveries into script calls: one slot per call on a cluster
	tail            string
	id              string
	err             error
	// copy, when set, is delivered by the same script call right after this one (the
	// sender's copy of a direct message; same bucket on a cluster). Its outcome is its own.
	copy *delivery
	// record, when set, is the field of the delivery's idempotency record in the group's
	// record hashes, named by records (same slot); fingerprint is the request's, and
	// replayed says the record showed it delivered before (see idempotent.lua).
	record, records, fingerprint string
	replayed                     bool
	// unreplicated says the master has it but fewer replicas than asked confirmed it.
	unreplicated bool
}

// pairs is how many stream and channel pairs d takes in a script call.
func (d *delivery) pairs() int {
	if d.copy != nil {
		return 2
	}
	return 1
}

// publisher runs the batch script for concurrent callers, sharing round trips: its worker
// sends whatever has queued (up to maxPipeline) as one pipeline, so that under load the node
// approaches Redis's pipelined ceiling instead of one round trip per message. The script is
// never retried by go-redis (the client must have MaxRetries -1): a timed-out call may have
// run, and running it again would store the message twice.
type publisher struct {
	rdb         redis.UniversalClient
	obs         Observer
	deadline    func() string // the script's deadline for a call made now
	publishCmd  string
	historySize string
	historyTTL  string
	idemTTL     string // Config.IdempotencyTTL in ms
	// roomHistorySize is the room streams' MAXLEN (the delivery script's ARGV[6]).
	roomHistorySize string
	batches         *pipeline.Batcher[delivery]
	replicas        replicaWait
}

func newPublisher(rdb redis.UniversalClient, cfg Config, publishCmd string, deadline func() string) *publisher {
	p := &publisher{
		rdb:             rdb,
		obs:             cfg.Observer,
		deadline:        deadline,
		publishCmd:      publishCmd,
		historySize:     strconv.FormatInt(cfg.HistorySize, 10),
		historyTTL:      strconv.FormatInt(cfg.HistoryTTL.Milliseconds(), 10),
		idemTTL:         strconv.FormatInt(cfg.IdempotencyTTL.Milliseconds(), 10),
		roomHistorySize: strconv.FormatInt(max(cfg.RoomHistorySize, 0), 10),
		replicas:        newReplicaWait(cfg),
	}
	p.batches = pipeline.New(pipeline.Config[delivery]{Send: p.exec, MaxBatch: maxPipeline, MaxQueued: 4 * maxPipeline})
	return p
}

// publish appends and publishes one message and returns its stream id.
func (p *publisher) publish(ctx context.Context, d delivery) (string, error) {
	d, err := p.do(ctx, d)
	return d.id, err
}

// do sends one delivery through the shared pipelines and returns it with its outcome.
func (p *publisher) do(ctx context.Context, d delivery) (delivery, error) {
	d, err := p.batches.Do(ctx, d)
	switch {
	case errors.Is(err, pipeline.ErrClosed):
		return d, ErrClosed
	case err != nil:
		return d, err
	}
	return d, d.err
}

// run sends the queued deliveries with workers until close is called and the queue is empty.
func (p *publisher) run(ctx context.Context, workers int) { p.batches.Run(ctx, workers) }

// close stops accepting deliveries; run returns once what was queued has been sent.
func (p *publisher) close() { p.batches.Close() }

// exec sends a batch as one pipeline and records every delivery's outcome. Deliveries are
// grouped (by bucket on Redis Cluster) into calls of the batch script of up to 64 each, so
// that a busy node pays one script call, not one per message; order is kept within a group.
func (p *publisher) exec(ctx context.Context, batch []*delivery) {
	groups := groupBy(batch, batchGroup, func(d *delivery) int {
		if d.record != "" { // the idempotent script's calls are of their own
			return Buckets + d.bucket
		}
		return d.bucket
	})
	cmds := make([]*redis.Cmd, len(groups))
	n := len(batch)
	wait := p.replicas.start(ctx)
	observe := func(took time.Duration, err error) { p.obs.ObservePublish(took, n, err) }
	wait.exec(p.rdb, len(groups), func(g int) string { return groups[g][0].stream }, observe, func(pipe redis.Pipeliner, g int) (redis.Cmder, *redis.Script) {
		if groups[g][0].record != "" {
			cmds[g] = p.idempotentCall(ctx, pipe, groups[g])
			return cmds[g], idempotentScript
		}
		keys := make([]string, 0, 4*len(groups[g]))
		args := make([]any, 0, 4+2*len(groups[g]))
		args = append(args, p.historySize, p.historyTTL, p.publishCmd, p.deadline())
		for _, d := range groups[g] {
			keys = append(keys, d.stream, d.channel)
			args = append(args, d.tail)
			if c := d.copy; c != nil {
				keys = append(keys, c.stream, c.channel)
				args = append(args, c.tail)
			}
		}
		cmds[g] = pipe.EvalSha(ctx, batchScript.Hash(), keys, args...)
		return cmds[g], batchScript
	})
	for g, group := range groups {
		answer(group, cmds[g])
	}
	wait.check(groups)
}

// answer records the outcome of one call of the batch script for each of its deliveries
// (and their copies: the id after a delivery's is its copy's).
func answer(group []*delivery, cmd *redis.Cmd) {
	ids, err := cmd.Slice()
	want := 0
	for _, d := range group {
		want += d.pairs()
	}
	k := 0
	set := func(x *delivery) {
		switch {
		case err != nil:
			x.err = fmt.Errorf("%w: %w", ErrUnavailable, err)
		case len(ids) != want:
			x.err = fmt.Errorf("%w: the batch script answered %d ids for %d messages", ErrUnavailable, len(ids), want)
		default:
			x.id, x.err = scriptID(ids[k])
			idempotentID(x)
		}
		k++
	}
	for _, d := range group {
		set(d)
		if d.copy != nil {
			set(d.copy)
		}
	}
}

// scriptID reads one message's outcome from the batch script's answer.
func scriptID(v any) (string, error) {
	switch v := v.(type) {
	case string:
		return v, nil
	case error: // this message was not stored; the others were
		return "", scriptError(v)
	default:
		return "", fmt.Errorf("%w: the batch script answered %T", ErrUnavailable, v)
	}
}
