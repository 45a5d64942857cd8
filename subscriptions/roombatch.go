package subscriptions

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
)

const (
	// roomBatchMessages is the most sends of one room that one fan-out delivers together.
	roomBatchMessages = 8
	// roomBatchBytes bounds the tails of one fan-out's sends (a first send of any size goes).
	roomBatchBytes = 256 << 10
	// roomBatchDeliveries bounds a batch's messages × members, as last seen: a fan-out
	// takes that many times longer than one send's, under the leading send's deadline, so a
	// room of 8,192 members or more is sent one message at a time, as before batching.
	roomBatchDeliveries = 8192
)

// roomItem is one send of a room waiting for, or taken into, a per-member fan-out.
type roomItem struct {
	env  Envelope
	how  RoomSend
	done chan struct{} // closed when the outcome below is set, or when the item is to lead

	// Set before done is closed.
	lead  bool // the item was not sent: its caller is to send the next batch
	res   RoomResult
	again bool // the room is big: send it big
	err   error
	short bool // the batch's replicas fell short (Config.WaitReplicas)
}

// roomBatches gathers a node's sends of a room that arrive while a per-member fan-out of the
// room is under way, and delivers them together in the next one (group commit). A room's
// sends are serialized anyway (the fan-out lock): the ones that would have waited for the
// lock one by one wait for one fan-out instead, which appends and publishes each member's
// messages in one script call, back to back, so the receiving node writes them to the
// member's socket together, and Redis sets the TTL of each member's stream once.
type roomBatches struct {
	mu    sync.Mutex
	rooms map[string]*roomQueue // rooms with a fan-out under way on this node
}

// roomQueue is the sends of one room waiting for the fan-out under way.
type roomQueue struct {
	waiting []*roomItem
	members int // recipients of the room's last fan-out on this node (0 before the first)
}

// publishBatched sends env to room on the per-member path, alone or with the sends that
// wait with it (see roomBatches); it answers as publishSmall does for a single send.
func (h *Hub) publishBatched(ctx context.Context, room string, env Envelope, how RoomSend) (RoomResult, bool, error) {
	it := &roomItem{env: env, how: how, done: make(chan struct{})}
	b := &h.roomBatches
	b.mu.Lock()
	if b.rooms == nil {
		b.rooms = make(map[string]*roomQueue)
	}
	q := b.rooms[room]
	first := q == nil
	if first {
		q = &roomQueue{}
		b.rooms[room] = q
	} else {
		q.waiting = append(q.waiting, it)
	}
	b.mu.Unlock()
	if !first {
		select {
		case <-it.done:
		case <-ctx.Done():
			b.mu.Lock()
			if i := slices.Index(q.waiting, it); i >= 0 {
				q.waiting = slices.Delete(q.waiting, i, i+1)
				b.mu.Unlock()
				return RoomResult{}, false, fmt.Errorf("%w: room %s: %w", ErrUnavailable, room, ctx.Err())
			}
			b.mu.Unlock()
			// Taken into a batch: its outcome is the batch's, whatever this caller's
			// context says, since the message may well be delivered.
			<-it.done
		}
		if !it.lead {
			return it.answer(ctx)
		}
	}
	h.sendBatch(ctx, room, q, it)
	return it.answer(ctx)
}

// answer returns the item's outcome to its caller, whose context (watchReplication) learns
// that the replicas fell short.
func (it *roomItem) answer(ctx context.Context) (RoomResult, bool, error) {
	if it.short {
		if short, _ := ctx.Value(shortfallKey{}).(*atomic.Bool); short != nil {
			short.Store(true)
		}
	}
	return it.res, it.again, it.err
}

// sendBatch sends lead and the sends waiting in q behind it, as many as one batch takes,
// then hands the room's next batch to the first send still waiting, or forgets q.
func (h *Hub) sendBatch(ctx context.Context, room string, q *roomQueue, lead *roomItem) {
	b := &h.roomBatches
	items := []*roomItem{lead}
	size := len(lead.env.Data)
	b.mu.Lock()
	most := batchLimit(q.members)
	n := 0
	for _, it := range q.waiting {
		if len(items) == most || size+len(it.env.Data) > roomBatchBytes {
			break
		}
		items = append(items, it)
		size += len(it.env.Data)
		n++
	}
	q.waiting = q.waiting[n:]
	b.mu.Unlock()

	// The batch carries others' sends: it is not abandoned when this caller goes away
	// (a closed connection), only when its deadline passes.
	bctx := context.WithoutCancel(ctx)
	if d, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		bctx, cancel = context.WithDeadline(bctx, d)
		defer cancel()
	}
	bctx, short := watchReplication(bctx)
	func() {
		defer func() {
			if v := recover(); v != nil {
				for _, it := range items {
					it.err = fmt.Errorf("%w: room %s: fan-out panicked: %v", ErrUnavailable, room, v)
				}
			}
		}()
		h.publishSmall(bctx, room, items)
	}()
	for _, it := range items {
		it.lead, it.short = false, short.Load()
		if it != lead {
			close(it.done)
		}
	}

	b.mu.Lock()
	for _, it := range items {
		q.members = max(q.members, it.res.Recipients)
	}
	if len(q.waiting) == 0 {
		delete(b.rooms, room)
		b.mu.Unlock()
		return
	}
	next := q.waiting[0]
	q.waiting = q.waiting[1:]
	next.lead = true
	b.mu.Unlock()
	close(next.done)
}

// batchLimit is how many sends one fan-out takes for a room last seen with members
// recipients (0: not seen yet).
func batchLimit(members int) int {
	if members <= 0 {
		return roomBatchMessages
	}
	return max(1, min(roomBatchMessages, roomBatchDeliveries/members))
}
