package subscriptions

import (
	"context"
	_ "embed"
	"fmt"
	"slices"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"
)

//go:embed roomhistory.lua
var roomHistoryLua string

// roomHistoryScript reads a page of a room's stream, bounded in entries and bytes, checking
// membership in the same call (roomhistory.lua).
var roomHistoryScript = redis.NewScript(roomHistoryLua)

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

// RoomHistory reads a page of room's own stream (the messages PublishRoomMessage kept), in
// one call that reads at most q.Limit entries and q.MaxBytes bytes of them.
func (h *Hub) RoomHistory(ctx context.Context, room string, q HistoryQuery) (HistoryPage, error) {
	if !ValidID(room) || (q.Member != "" && !ValidID(q.Member)) {
		return HistoryPage{}, ErrInvalidID
	}
	if q.Limit <= 0 {
		return HistoryPage{}, fmt.Errorf("limit %d must be positive", q.Limit)
	}
	dir, from := "rev", "+"
	switch {
	case !q.Since.IsZero() || q.Forward:
		dir, from = "fwd", "("+q.Since.String()
	case !q.Before.IsZero():
		from = "(" + q.Before.String()
	}
	keys := []string{h.keys.roomHistory(room)}
	if q.Member != "" {
		keys = append(keys, h.keys.roomMembers(room))
	}
	budget := q.MaxBytes
	if budget <= 0 {
		budget = 1 << 62
	}
	v, err := roomHistoryScript.Run(ctx, h.rdb, keys, dir, from, q.Limit, budget, q.Member).Slice()
	if err != nil {
		return HistoryPage{}, fmt.Errorf("%w: read room history: %w", ErrUnavailable, err)
	}
	page, err := parseHistoryPage(v)
	if err != nil {
		return HistoryPage{}, err
	}
	if dir == "rev" {
		slices.Reverse(page.Messages)
	}
	return page, nil
}

// parseHistoryPage decodes roomhistory.lua's answer.
func parseHistoryPage(v []any) (HistoryPage, error) {
	if len(v) == 1 && v[0] == int64(-1) {
		return HistoryPage{}, ErrNotMember
	}
	if len(v) != 2 {
		return HistoryPage{}, fmt.Errorf("%w: the room history script answered %d values", ErrUnavailable, len(v))
	}
	list, _ := v[1].([]any)
	page := HistoryPage{More: v[0] == int64(1), Messages: make([]Message, 0, len(list))}
	for _, x := range list {
		pair, _ := x.([]any)
		if len(pair) != 2 {
			return HistoryPage{}, fmt.Errorf("%w: the room history script answered a malformed entry", ErrUnavailable)
		}
		id, _ := pair[0].(string)
		tail, _ := pair[1].(string)
		sid, err := ParseStreamID(id)
		if err != nil || !utf8.ValidString(tail) { // only another writer can have put it there
			continue
		}
		page.Messages = append(page.Messages, Message{ID: sid, Payload: assemble(id, tail)})
	}
	return page, nil
}
