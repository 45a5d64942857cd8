package subscriptions

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// historyPage is how many stream entries one XRANGE reads.
const historyPage = 500

// readAfter reads up to limit messages of user's stream after from, oldest first. recovered
// tells whether nothing after from was trimmed: from itself is still in the stream (or from
// is 0-0 and the stream was never trimmed), or from is not older than the newest entry.
func (h *Hub) readAfter(ctx context.Context, user string, from StreamID, limit int) (msgs []Message, recovered bool, err error) {
	stream := h.keys.userStream(user)
	start := from.String() // inclusive: finding from itself proves nothing was lost after it
	first := true
	for len(msgs) < limit {
		count := int64(min(historyPage, limit-len(msgs)) + 1)
		entries, err := h.rdb.XRangeN(ctx, stream, start, "+", count).Result()
		if err != nil {
			return nil, false, fmt.Errorf("%w: read history: %w", ErrUnavailable, err)
		}
		if first {
			first = false
			recovered, err = h.recoveredFrom(ctx, stream, from, entries)
			if err != nil {
				return nil, false, err
			}
		}
		for _, e := range entries {
			m, ok := entryMessage(e)
			if !ok || !from.Less(m.ID) {
				continue
			}
			msgs = append(msgs, m)
			from = m.ID
			if len(msgs) == limit {
				break
			}
		}
		if int64(len(entries)) < count {
			break
		}
		start = "(" + from.String()
	}
	return msgs, recovered, nil
}

// recoveredFrom decides, from the first page read inclusively from from, whether every
// message after from is still in the stream.
func (h *Hub) recoveredFrom(ctx context.Context, stream string, from StreamID, page []redis.XMessage) (bool, error) {
	if len(page) > 0 {
		id, err := ParseStreamID(page[0].ID)
		if err == nil && id == from {
			return true, nil
		}
	}
	if from.IsZero() {
		// Everything is wanted: complete unless the stream was ever trimmed, which with an
		// exact MAXLEN leaves it at HistorySize entries.
		n, err := h.rdb.XLen(ctx, stream).Result()
		if err != nil {
			return false, fmt.Errorf("%w: read history: %w", ErrUnavailable, err)
		}
		return n < h.cfg.HistorySize, nil
	}
	if len(page) > 0 {
		return false, nil // from is gone and newer entries exist: some may have been trimmed
	}
	// Nothing at or after from. Complete if from is not older than the newest entry; an
	// empty or expired stream cannot tell what it held, so say no.
	top, err := h.rdb.XRevRangeN(ctx, stream, "+", "-", 1).Result()
	if err != nil {
		return false, fmt.Errorf("%w: read history: %w", ErrUnavailable, err)
	}
	if len(top) == 0 {
		return false, nil
	}
	id, err := ParseStreamID(top[0].ID)
	return err == nil && !from.Less(id), nil
}

// newest returns the id of the newest message in user's stream, 0-0 when there is none.
func (h *Hub) newest(ctx context.Context, user string) (StreamID, error) {
	top, err := h.rdb.XRevRangeN(ctx, h.keys.userStream(user), "+", "-", 1).Result()
	if err != nil {
		return StreamID{}, fmt.Errorf("%w: read history: %w", ErrUnavailable, err)
	}
	if len(top) == 0 {
		return StreamID{}, nil
	}
	return ParseStreamID(top[0].ID)
}

// entryMessage rebuilds a message envelope from its stream entry.
func entryMessage(e redis.XMessage) (Message, bool) {
	id, err := ParseStreamID(e.ID)
	if err != nil {
		return Message{}, false
	}
	tail, ok := e.Values["e"].(string)
	if !ok {
		return Message{}, false
	}
	return Message{ID: id, Payload: assemble(e.ID, tail)}, true
}

// History returns up to limit messages of user's stream after since (all kept messages when
// since is ""), oldest first, as the envelopes delivered on the WebSocket.
func (h *Hub) History(ctx context.Context, user, since string, limit int) ([]Message, error) {
	if !ValidID(user) {
		return nil, ErrInvalidID
	}
	var from StreamID
	if since != "" {
		var err error
		if from, err = ParseStreamID(since); err != nil {
			return nil, err
		}
	}
	if limit <= 0 {
		return nil, errors.New("limit must be positive")
	}
	msgs, _, err := h.readAfter(ctx, user, from, limit)
	return msgs, err
}
