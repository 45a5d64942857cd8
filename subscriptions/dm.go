package subscriptions

import (
	"context"
	"time"
)

// copyTimeout bounds the write of a sender's copy made after the recipient's (Redis
// Cluster, different slots).
const copyTimeout = 5 * time.Second

// DirectResult is the outcome of a client's direct message (PublishDM).
type DirectResult struct {
	// ID is the message's id in the recipient's stream: what the sender's ack carries.
	ID StreamID
	// CopyID is the id of the sender's own copy in the sender's stream; zero when there is
	// no copy (a message to oneself) or it was not stored (CopyErr).
	CopyID StreamID
	// CopyErr says why the sender's copy was not stored although the recipient's was: on
	// Redis Cluster, where the two users' keys may live in different slots, the copy is a
	// second write after the first; it can also fail on its own where the sender's stream
	// key holds another type. Nil otherwise.
	CopyErr error
}

// PublishDM delivers a direct message from a user (env.From, required) to user to, and a
// copy of it, carrying "to", to the sender's own stream and channel, so that every device of
// the sender, its resume and its history show both sides of the conversation.
//
// On a single Redis both are one call of the delivery script: both are stored or neither.
// On Redis Cluster they are one call when both users' keys share a bucket; otherwise the
// recipient's message is written first, and only once it is stored the sender's copy,
// whose failure is reported in CopyErr, not as an error: the message was accepted. An
// error means the recipient's message was not stored (and no copy was), except
// ErrNotReplicated, which comes with the result: with Config.WaitReplicas, the message (or
// its copy) is stored and published on the master but fewer replicas than asked confirmed it
// in time.
func (h *Hub) PublishDM(ctx context.Context, to string, env Envelope) (DirectResult, error) {
	if !ValidID(to) || !ValidID(env.From) || !env.validIDs() {
		return DirectResult{}, ErrInvalidID
	}
	if err := ctx.Err(); err != nil {
		return DirectResult{}, err
	}
	env.To = ""
	d := delivery{stream: h.keys.userStream(to), channel: h.keys.userChannel(to),
		bucket: h.groupKey(to), tail: env.tail()}
	if to == env.From {
		d, err := h.pub.do(ctx, d)
		if err != nil {
			return DirectResult{}, err
		}
		sid, err := ParseStreamID(d.id)
		if err == nil && d.unreplicated {
			err = ErrNotReplicated
		}
		return DirectResult{ID: sid}, err
	}
	env.To = to
	copied := &delivery{stream: h.keys.userStream(env.From), channel: h.keys.userChannel(env.From),
		bucket: h.groupKey(env.From), tail: env.tail()}
	together := copied.bucket == d.bucket
	if together {
		d.copy = copied
	}
	d, err := h.pub.do(ctx, d)
	if err != nil {
		return DirectResult{}, err
	}
	var res DirectResult
	if res.ID, err = ParseStreamID(d.id); err != nil {
		return DirectResult{}, err
	}
	unreplicated := d.unreplicated
	if !together {
		// The recipient has the message: the copy is written even if the caller gives up
		// meanwhile, bounded by a timeout of its own.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), copyTimeout)
		c, cerr := h.pub.do(cctx, *copied)
		cancel()
		copied.id, copied.err = c.id, cerr
		unreplicated = unreplicated || (cerr == nil && c.unreplicated)
	}
	if copied.err == nil {
		res.CopyID, copied.err = ParseStreamID(copied.id)
	}
	res.CopyErr = copied.err
	if unreplicated {
		return res, ErrNotReplicated
	}
	return res, nil
}
