package subscriptions

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultIdempotencyTTL is Config.IdempotencyTTL's default: a day, as payment APIs keep
// their keys, so a backend's retry after any outage short of a day is answered.
const DefaultIdempotencyTTL = 24 * time.Hour

// claimLease is how long a claimed room send may take before its record lapses: a node that
// dies part way through a fan-out must not block its key for a day.
const claimLease = 2 * roomLockLease

var (
	// ErrIdempotencyConflict means the idempotency key was used before with another request.
	ErrIdempotencyConflict = errors.New("idempotency key reused with another request")
	// ErrIdempotencyPending means a send under the same key is still under way.
	ErrIdempotencyPending = errors.New("a send with this idempotency key is under way")
)

//go:embed idempotent.lua
var idempotentLua string

// idempotentScript delivers direct messages together with their idempotency records.
var idempotentScript = redis.NewScript(idempotentLua)

//go:embed claim.lua
var claimLua string

var claimScript = redis.NewScript(claimLua)

// finishScript stores a claimed send's answer, only over the claim itself: a claim that
// lapsed and was taken again is not the caller's to finish.
var finishScript = redis.NewScript(`if redis.call('GET', KEYS[1]) == ARGV[1] .. ' ' then
  return redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. ARGV[2], 'PX', ARGV[3]) end return 0`)

// Idempotency names a send that a retry must not repeat: Key is the caller's key (already
// validated), Fingerprint a digest of the request (no spaces), so that the key reused with
// another request is told apart from a retry.
type Idempotency struct {
	Key, Fingerprint string
}

// idemRecords is the base name of the hashes that keep the idempotency records of a
// delivery group's direct messages (see idempotent.lua): in the group's slot.
func (k keys) idemRecords(group int) string { return k.bucketTag(group) + ":idem" }

// dmRecord readies d to carry the idempotency record of a direct message to user: scope
// tells apart the sends that may share a key (a single send, an item of a batch). The
// record's field in its hash is the send's dedupe token, a digest of all that names it.
func (h *Hub) dmRecord(d *delivery, user, scope string, idem Idempotency) {
	d.record = dedupeToken("dm", user, scope, idem.Key)
	d.records = h.keys.idemRecords(d.bucket)
	d.fingerprint = idem.Fingerprint
}

// Sent is the outcome of an idempotent direct message.
type Sent struct {
	ID StreamID
	// Replayed says the message had been delivered by an earlier call with the same key;
	// ID is the id it got then, and nothing was delivered now.
	Replayed bool
}

// PublishIdempotent delivers env to user as Publish does, unless a send with the same key
// delivered it already: the record is read and written by the same script call as the
// append and publish, so concurrent retries deliver once. The key reused with another
// request fails with ErrIdempotencyConflict and delivers nothing. The message carries the
// key's dedupe token (dedupeToken).
func (h *Hub) PublishIdempotent(ctx context.Context, user string, env Envelope, idem Idempotency) (Sent, error) {
	if !ValidID(user) || !env.validIDs() {
		return Sent{}, ErrInvalidID
	}
	if err := ctx.Err(); err != nil {
		return Sent{}, err
	}
	d := delivery{stream: h.keys.userStream(user), channel: h.keys.userChannel(user), bucket: h.groupKey(user)}
	h.dmRecord(&d, user, "u", idem)
	if env.Dedupe == "" {
		env.Dedupe = d.record
	}
	d.tail = env.tail()
	d, err := h.pub.do(ctx, d)
	if err != nil {
		return Sent{}, err
	}
	id, err := ParseStreamID(d.id)
	if err == nil && d.unreplicated {
		err = ErrNotReplicated
	}
	return Sent{ID: id, Replayed: d.replayed}, err
}

// PublishManyIdempotent delivers a batch as PublishMany does, each message with a record of
// its own (the batch's key and the message's index), so that a retry of the batch delivers
// only what the first call did not, and answers the rest with their first ids. Each message
// carries its record's dedupe token (dedupeToken, scope "b<index>").
func (h *Hub) PublishManyIdempotent(ctx context.Context, msgs []Direct, idem Idempotency) ([]Sent, []error) {
	return h.publishMany(ctx, msgs, &idem)
}

// idempotentCall queues the script call of an idempotent group: its deliveries' stream and
// channel pairs, then the group's record hashes.
func (p *publisher) idempotentCall(ctx context.Context, pipe redis.Pipeliner, group []*delivery) *redis.Cmd {
	keys := make([]string, 0, 2*len(group)+1)
	args := make([]any, 0, 5+3*len(group))
	args = append(args, p.historySize, p.historyTTL, p.publishCmd, p.deadline(), p.idemTTL)
	for _, d := range group {
		keys = append(keys, d.stream, d.channel)
		args = append(args, d.tail, d.record, d.fingerprint)
	}
	return pipe.EvalSha(ctx, idempotentScript.Hash(), append(keys, group[0].records), args...)
}

// ClaimState is what an idempotency record says of a send.
type ClaimState int

const (
	// Claimed: no send had the key; the caller sends and then calls Finish.
	Claimed ClaimState = iota
	// Done: a send finished under the key; Answer is what it answered.
	Done
)

// Claim is a room send's idempotency record, as claimed or found.
type Claim struct {
	State  ClaimState
	Answer string
	record string
	fp     string
	dedupe string
}

// Dedupe is the dedupe token of the claimed send: set it as the envelope's Dedupe, so that
// the members who got a send the new master lost do not get its retry again (dedupe.go).
func (c Claim) Dedupe() string { return c.dedupe }

// ClaimRoomSend claims the record of a room send (scope tells a single send from a batch's
// item) before its fan-out, which spans many script calls: the claim is atomic, so of
// concurrent calls with one key exactly one sends. It fails with ErrIdempotencyConflict
// for another request's fingerprint and ErrIdempotencyPending while the claimant sends.
// A claim lapses after claimLease unless Finish records the answer, kept Config.IdempotencyTTL.
func (h *Hub) ClaimRoomSend(ctx context.Context, room, scope string, idem Idempotency) (Claim, error) {
	if !ValidID(room) {
		return Claim{}, ErrInvalidID
	}
	c, pending, err := h.claim(ctx, h.keys.roomTag(room)+":idem:"+scope+":"+idem.Key, idem, claimLease)
	if pending {
		return Claim{}, ErrIdempotencyPending
	}
	c.dedupe = dedupeToken("room", room, scope, idem.Key)
	return c, err
}

// ClaimBatch records a batch's fingerprint under its key for Config.IdempotencyTTL, before any of
// its items is sent, so that the key reused with another batch fails with
// ErrIdempotencyConflict and sends nothing. A retry of the same batch passes: its items
// carry records of their own, which decide what is delivered again (nothing).
func (h *Hub) ClaimBatch(ctx context.Context, idem Idempotency) error {
	_, _, err := h.claim(ctx, "{"+h.keys.prefix+":idem:"+idem.Key+"}:batch", idem, h.cfg.IdempotencyTTL)
	return err
}

// claim runs the claim script on record; pending says a send holds the claim.
func (h *Hub) claim(ctx context.Context, record string, idem Idempotency, lease time.Duration) (Claim, bool, error) {
	c := Claim{record: record, fp: idem.Fingerprint}
	v, err := claimScript.Run(ctx, h.rdb, []string{record}, c.fp, lease.Milliseconds()).StringSlice()
	if err != nil {
		return Claim{}, false, fmt.Errorf("%w: claim idempotency key: %w", ErrUnavailable, err)
	}
	switch {
	case len(v) == 1 && v[0] == "claimed":
		return c, false, nil
	case len(v) == 1 && v[0] == "pending":
		return Claim{}, true, nil
	case len(v) == 1 && v[0] == "conflict":
		return Claim{}, false, ErrIdempotencyConflict
	case len(v) == 2 && v[0] == "done":
		c.State, c.Answer = Done, v[1]
		return c, false, nil
	}
	return Claim{}, false, fmt.Errorf("%w: the claim script answered %q", ErrUnavailable, v)
}

// Finish records a claimed send's answer for Config.IdempotencyTTL, for retries to return.
func (h *Hub) Finish(ctx context.Context, c Claim, answer string) error {
	if c.State != Claimed || c.record == "" {
		return nil
	}
	err := finishScript.Run(ctx, h.rdb, []string{c.record}, c.fp, answer, h.cfg.IdempotencyTTL.Milliseconds()).Err()
	if err != nil {
		return fmt.Errorf("%w: record the answer: %w", ErrUnavailable, err)
	}
	return nil
}

// idempotentID reads one idempotent delivery's outcome: a new id, or "r" and the id of the
// earlier delivery it repeats.
func idempotentID(d *delivery) {
	if d.err == nil && strings.HasPrefix(d.id, "r") {
		d.id, d.replayed = d.id[1:], true
	}
}

// scriptError maps an error a delivery script answered for one message.
func scriptError(err error) error {
	if strings.HasPrefix(err.Error(), "IDEMPOTENCY_CONFLICT") {
		return ErrIdempotencyConflict
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}
