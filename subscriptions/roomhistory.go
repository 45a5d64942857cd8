package subscriptions

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"
)

// historyChunk bounds the entries one read of a room's stream asks for. A page of fewer
// messages (the app's pages of 50) is one round trip; a longer one (up to 100 for a
// history frame, 1,000 for the HTTP API) reads chunk after chunk, so that a page cut by its
// byte bound after a few large messages never made Redis copy a thousand of them: the
// most a read copies past the bound is one chunk of messages of the largest size a node
// accepts.
const historyChunk = 64

// HistoryQuery says which page of a room's history to read.
type HistoryQuery struct {
	// Since, when not zero, reads the messages after it, oldest first.
	Since StreamID
	// Before, when Since is zero, reads the newest messages before it (all when zero).
	Before StreamID
	// Forward reads from the oldest kept message when Since is zero: the messages after
	// 0-0, as a user's history does.
	Forward bool
	// Limit is at most how many messages (required, positive).
	Limit int
	// MaxBytes bounds the page's envelopes in bytes; a single larger message still comes,
	// alone. Zero means no bound.
	MaxBytes int
	// Member, when set, must be a member of the room, checked in the same call: a client's
	// read. Otherwise ErrNotMember.
	Member string
}

// HistoryPage is a page of a room's history, oldest first.
type HistoryPage struct {
	// Messages are the envelopes as delivered, with the room stream's ids.
	Messages []Message
	// More is set when the room's stream may hold messages past the page, in the direction
	// read (cut by Limit or MaxBytes).
	More bool
}

// historyRead is the state of one RoomHistory call: its direction, the bound the next
// chunk starts after, and the page so far.
type historyRead struct {
	reverse bool
	from    string // "-"/"+" for none, else "(<id>"
	limit   int
	budget  int
	bytes   int
	page    HistoryPage
}

// RoomHistory reads a page of room's own stream (the messages PublishRoomMessage kept): at
// most q.Limit entries and q.MaxBytes bytes of them. A member's read checks the membership
// and reads the first chunk in one MULTI/EXEC (both keys share the room's slot), so that a
// member removed before the read never sees a message posted after its removal. The reads
// are plain XRANGE/XREVRANGE: a script that filtered the entries would cost Redis five
// times as much CPU per page (docs/benchmarks.md, "Conversations").
func (h *Hub) RoomHistory(ctx context.Context, room string, q HistoryQuery) (HistoryPage, error) {
	if !ValidID(room) || (q.Member != "" && !ValidID(q.Member)) {
		return HistoryPage{}, ErrInvalidID
	}
	if q.Limit <= 0 {
		return HistoryPage{}, fmt.Errorf("limit %d must be positive", q.Limit)
	}
	r := historyRead{reverse: true, from: "+", limit: q.Limit, budget: q.MaxBytes}
	switch {
	case !q.Since.IsZero() || q.Forward:
		r.reverse, r.from = false, "("+q.Since.String()
	case !q.Before.IsZero():
		r.from = "(" + q.Before.String()
	}
	if r.budget <= 0 {
		r.budget = 1 << 62
	}
	r.page.Messages = make([]Message, 0, min(q.Limit, historyChunk))
	stream := h.keys.roomHistory(room)
	for first := true; ; first = false {
		n := int64(min(r.limit-len(r.page.Messages)+1, historyChunk))
		var entries []redis.XMessage
		var err error
		if first && q.Member != "" {
			entries, err = h.memberChunk(ctx, &r, room, stream, q.Member, n)
		} else {
			entries, err = r.chunk(ctx, h.rdb, stream, n).Result()
		}
		switch {
		case errors.Is(err, ErrNotMember):
			return HistoryPage{}, err
		case err != nil:
			return HistoryPage{}, fmt.Errorf("%w: read room history: %w", ErrUnavailable, err)
		}
		if r.add(entries, int(n)) {
			break
		}
	}
	if r.reverse {
		slices.Reverse(r.page.Messages)
	}
	return r.page, nil
}

// memberChunk checks that user is a member of room and reads the first chunk, in one
// MULTI/EXEC.
func (h *Hub) memberChunk(ctx context.Context, r *historyRead, room, stream, user string, n int64) ([]redis.XMessage, error) {
	var member *redis.BoolCmd
	var chunk *redis.XMessageSliceCmd
	_, err := h.rdb.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
		member = pipe.SIsMember(ctx, h.keys.roomMembers(room), user)
		chunk = r.chunk(ctx, pipe, stream, n)
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	if !member.Val() {
		return nil, ErrNotMember
	}
	return chunk.Result()
}

// chunk reads the next n entries in r's direction.
func (r *historyRead) chunk(ctx context.Context, c redis.Cmdable, stream string, n int64) *redis.XMessageSliceCmd {
	if r.reverse {
		return c.XRevRangeN(ctx, stream, r.from, "-", n)
	}
	return c.XRangeN(ctx, stream, r.from, "+", n)
}

// add takes a chunk of n entries asked for into the page and reports whether the page is
// complete: full (more after it), cut by the byte bound (more), or the stream's end. The
// first message always comes, whatever its size, so that a reader makes progress; an
// entry without an envelope (only another writer can have put it there) is skipped.
func (r *historyRead) add(entries []redis.XMessage, n int) bool {
	for _, e := range entries {
		if len(r.page.Messages) == r.limit {
			r.page.More = true
			return true
		}
		tail, ok := e.Values["e"].(string)
		sid, err := ParseStreamID(e.ID)
		if !ok || err != nil || !utf8.ValidString(tail) {
			continue
		}
		if len(r.page.Messages) > 0 && r.bytes+len(tail) > r.budget {
			r.page.More = true
			return true
		}
		r.bytes += len(tail)
		r.page.Messages = append(r.page.Messages, Message{ID: sid, Payload: assemble(e.ID, tail)})
	}
	if len(entries) < n {
		return true
	}
	r.from = "(" + entries[len(entries)-1].ID
	return false
}
