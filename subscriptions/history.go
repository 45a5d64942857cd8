package subscriptions

import (
	"context"
	"errors"
	"fmt"
	"unicode/utf8"

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
// Every new connection asks it, so the reads of a connect storm share round trips.
func (h *Hub) newest(ctx context.Context, user string) (StreamID, error) {
	r := &topRead{stream: h.keys.userStream(user), done: make(chan struct{})}
	select {
	case h.tops <- r:
	case <-ctx.Done():
		return StreamID{}, fmt.Errorf("%w: read history: %w", ErrUnavailable, ctx.Err())
	case <-h.done:
		return StreamID{}, ErrClosed
	}
	select {
	case <-r.done:
		return r.id, r.err
	case <-h.done: // stopped after taking the read but before answering it
		return StreamID{}, ErrClosed
	}
}

// topRead is one queued newest-id read.
type topRead struct {
	stream string
	id     StreamID
	err    error
	done   chan struct{}
}

// topReader answers queued newest-id reads, each batch of up to 256 in one pipeline.
func (h *Hub) topReader(ctx context.Context) {
	batch := make([]*topRead, 0, 256)
	for {
		select {
		case <-ctx.Done():
			for {
				select {
				case r := <-h.tops:
					r.err = ErrClosed
					close(r.done)
				default:
					return
				}
			}
		case r := <-h.tops:
			batch = append(batch[:0], r)
		}
	fill:
		for len(batch) < cap(batch) {
			select {
			case r := <-h.tops:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		pipe := h.rdb.Pipeline()
		cmds := make([]*redis.XMessageSliceCmd, len(batch))
		for i, r := range batch {
			cmds[i] = pipe.XRevRangeN(ctx, r.stream, "+", "-", 1)
		}
		_, _ = pipe.Exec(ctx)
		for i, r := range batch {
			top, err := cmds[i].Result()
			switch {
			case err != nil:
				r.err = fmt.Errorf("%w: read history: %w", ErrUnavailable, err)
			case len(top) > 0:
				r.id, r.err = ParseStreamID(top[0].ID)
			}
			close(r.done)
		}
	}
}

// entryMessage rebuilds a message envelope from its stream entry.
func entryMessage(e redis.XMessage) (Message, bool) {
	id, err := ParseStreamID(e.ID)
	if err != nil {
		return Message{}, false
	}
	tail, ok := e.Values["e"].(string)
	if !ok || !utf8.ValidString(tail) { // as decodeMessage: only another writer can have put it there
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
