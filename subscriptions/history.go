package subscriptions

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard-dev/switchboard/internal/pipeline"
)

// historyPage is how many stream entries one XRANGE reads, and at most how many one page
// of a replay holds.
const historyPage = 500

//go:embed page.lua
var pageLua string

// pageScript reads one page of a replay, bounded in entries and bytes (page.lua). It is
// loaded at startup, called by its SHA in the catch-up workers' pipelines, and loaded again
// on NOSCRIPT.
var pageScript = redis.NewScript(pageLua)

// replayPage is one page of a user's stream read for a replay.
type replayPage struct {
	// entries start with the anchor (the position read from) when the stream still holds
	// it, without its fields.
	entries []redis.XMessage
	// more is set when the stream may hold entries after the last one: the page was cut by
	// its byte or entry bound.
	more bool
}

// pageArgs are the page script's arguments for a page from from: half of ReplayBytes is
// read ahead, the other half may wait in the connection's queue (see PacedSink).
func (h *Hub) pageArgs(from StreamID) []any {
	return []any{from.String(), historyPage + 1, max(1, h.cfg.ReplayBytes/2), from.String()}
}

// readPage reads one page of user's stream from from, inclusive.
func (h *Hub) readPage(ctx context.Context, user string, from StreamID) (replayPage, error) {
	v, err := pageScript.Run(ctx, h.rdb, []string{h.keys.userStream(user)}, h.pageArgs(from)...).Result()
	if err != nil {
		return replayPage{}, fmt.Errorf("%w: read history: %w", ErrUnavailable, err)
	}
	return parsePage(v)
}

// parsePage decodes the page script's answer.
func parsePage(v any) (replayPage, error) {
	top, ok := v.([]any)
	if !ok || len(top) != 2 {
		return replayPage{}, fmt.Errorf("%w: the page script answered %T", ErrUnavailable, v)
	}
	cut, _ := top[0].(int64)
	list, ok := top[1].([]any)
	if !ok {
		return replayPage{}, fmt.Errorf("%w: the page script answered %T for entries", ErrUnavailable, top[1])
	}
	p := replayPage{entries: make([]redis.XMessage, 0, len(list)), more: cut == 1 || len(list) >= historyPage+1}
	for _, x := range list {
		pair, ok := x.([]any)
		if !ok || len(pair) != 2 {
			return replayPage{}, fmt.Errorf("%w: the page script answered a malformed entry", ErrUnavailable)
		}
		id, _ := pair[0].(string)
		fields, _ := pair[1].([]any)
		values := make(map[string]any, len(fields)/2)
		for i := 0; i+1 < len(fields); i += 2 {
			if k, ok := fields[i].(string); ok {
				values[k] = fields[i+1]
			}
		}
		p.entries = append(p.entries, redis.XMessage{ID: id, Values: values})
	}
	return p, nil
}

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
	r, err := h.tops.Do(ctx, topRead{stream: h.keys.userStream(user)})
	switch {
	case errors.Is(err, pipeline.ErrClosed):
		return StreamID{}, ErrClosed
	case err != nil:
		return StreamID{}, fmt.Errorf("%w: read history: %w", ErrUnavailable, err)
	}
	return r.id, r.err
}

// topRead is one newest-id read and its answer.
type topRead struct {
	stream string
	id     StreamID
	err    error
}

// topReads batches the newest-id reads of new connections, up to 256 in one pipeline.
type topReads = pipeline.Batcher[topRead]

func newTopReads(rdb redis.UniversalClient) *topReads {
	return pipeline.New(pipeline.Config[topRead]{MaxBatch: 256, MaxQueued: 1024,
		Send: func(ctx context.Context, batch []*topRead) { readTops(ctx, rdb, batch) }})
}

// topReader answers queued newest-id reads until ctx ends; each call adds one worker.
func (h *Hub) topReader(ctx context.Context) { h.tops.Run(ctx, 1) }

// readTops reads the newest entry of each read's stream in one pipeline.
func readTops(ctx context.Context, rdb redis.UniversalClient, batch []*topRead) {
	pipe := rdb.Pipeline()
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
	return Message{ID: id, Payload: assemble(e.ID, tail), Dedupe: dedupeOf(tail)}, true
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
