package service

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/switchboard-dev/switchboard/subscriptions"
)

// Bounds of room history reads: what one request may make the node read from Redis and
// hold, so that a hostile client cannot make it copy much for others to wait behind.
const (
	// historyFrameDefault and historyFrameMax are a history frame's default and largest limit.
	historyFrameDefault = 50
	historyFrameMax     = 100
	// historyFrameBytes bounds the envelopes of one history frame (a single larger message
	// still comes, alone); the answer says "more" and the client pages with "before".
	historyFrameBytes = 256 << 10
	// historyHTTPBytes bounds one GET /v1/rooms/{room}/messages answer likewise.
	historyHTTPBytes = 4 << 20
	// readRate and readBurst limit each connection's history and presence frames.
	readRate  = 10 // per second
	readBurst = 20
)

// readCommands decode the frames that read a room (this file and roompresence.go).
var readCommands = map[string]func(*rawFrame, cmdRef, frameStrings) (command, *frameError){
	"history":  (*rawFrame).historyCommand,
	"presence": (*rawFrame).presenceCommand,
}

// historyCmd reads a page of a room's history ({"type":"history","room":...,"limit":N,
// "before":ID}); members only.
type historyCmd struct {
	cmdRef
	room   string
	limit  int
	before subscriptions.StreamID
}

// historyCommand validates a history frame.
func (raw *rawFrame) historyCommand(cr cmdRef, f frameStrings) (command, *frameError) {
	if fe := raw.onlyFields("history", fieldRoom, fieldLimit, fieldBefore); fe != nil {
		return nil, fe
	}
	if err := requireID("room", f.room); err != nil {
		return nil, &frameError{code: codeInvalidID, message: err.Error()}
	}
	cmd := historyCmd{cmdRef: cr, room: f.room, limit: historyFrameDefault}
	if v := raw.fields[fieldLimit]; v != nil {
		n, err := strconv.Atoi(string(v))
		if err != nil || n < 1 || n > historyFrameMax {
			return nil, &frameError{code: codeBadRequest, message: `"limit" must be an integer from 1 to ` + strconv.Itoa(historyFrameMax)}
		}
		cmd.limit = n
	}
	if raw.fields[fieldBefore] != nil {
		id, err := subscriptions.ParseStreamID(f.before)
		if err != nil {
			return nil, &frameError{code: codeBadRequest, message: `"before" must be a message id <ms>-<seq>`}
		}
		cmd.before = id
	}
	return cmd, nil
}

// historyFrame answers a history frame; Messages are spliced in as encoded.
type historyFrame struct {
	ref, room string
	page      subscriptions.HistoryPage
}

func (f historyFrame) encode() []byte {
	n := 64 + len(f.ref) + len(f.room)
	for _, m := range f.page.Messages {
		n += len(m.Payload) + 1
	}
	b := make([]byte, 0, n)
	b = append(b, `{"type":"history"`...)
	if f.ref != "" {
		ref, _ := json.Marshal(f.ref) // a ref is any string of up to 64 characters
		b = append(b, `,"ref":`...)
		b = append(b, ref...)
	}
	b = append(b, `,"room":"`...)
	b = append(b, f.room...)
	b = append(b, `","messages":`...)
	b = appendMessages(b, f.page.Messages)
	b = append(b, `,"more":`...)
	b = strconv.AppendBool(b, f.page.More)
	return append(b, '}')
}

// appendMessages appends encoded envelopes as a JSON array.
func appendMessages(b []byte, msgs []subscriptions.Message) []byte {
	b = append(b, '[')
	for i, m := range msgs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, m.Payload...)
	}
	return append(b, ']')
}

// history answers a history frame from a member of the room with a page of its history.
func (s *Server) history(ctx context.Context, c *client, cmd historyCmd) error {
	if !c.allowRead(cmd.ref) {
		return nil
	}
	page, err := s.hub.RoomHistory(ctx, cmd.room, subscriptions.HistoryQuery{
		Before: cmd.before, Limit: cmd.limit, MaxBytes: historyFrameBytes, Member: c.user})
	if err != nil {
		return err
	}
	c.send(historyFrame{ref: cmd.ref, room: cmd.room, page: page}.encode())
	return nil
}

// handleGetRoomMessages serves a room's history: GET /v1/rooms/{room}/messages?since=ID
// (oldest first after since; from the oldest kept without it) or ?before=ID (the newest
// before it), with limit as for a user's history.
func (s *Server) handleGetRoomMessages(w http.ResponseWriter, r *http.Request) {
	room, err := pathID(r, "room")
	if err != nil {
		writeError(w, err)
		return
	}
	q := r.URL.Query()
	hq := subscriptions.HistoryQuery{Limit: 100, MaxBytes: historyHTTPBytes, Forward: true}
	for name, dst := range map[string]*subscriptions.StreamID{"since": &hq.Since, "before": &hq.Before} {
		if v := q.Get(name); v != "" {
			if *dst, err = subscriptions.ParseStreamID(v); err != nil {
				writeError(w, errBadRequest(codeBadRequest, name+" must be a message id <ms>-<seq>"))
				return
			}
		}
	}
	switch {
	case q.Get("since") != "" && q.Get("before") != "":
		writeError(w, errBadRequest(codeBadRequest, "give since or before, not both"))
		return
	case q.Get("before") != "":
		hq.Forward = false
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			writeError(w, errBadRequest(codeBadRequest, "limit must be an integer from 1 to 1000"))
			return
		}
		hq.Limit = n
	}
	page, err := s.hub.RoomHistory(r.Context(), room, hq)
	if err != nil {
		writeError(w, err)
		return
	}
	b := append([]byte(`{"messages":`), appendMessages(nil, page.Messages)...)
	b = append(b, `,"more":`...)
	b = strconv.AppendBool(b, page.More)
	writeJSONBytes(w, http.StatusOK, append(b, "}\n"...))
}

// readBudget is a connection's token bucket for history and presence frames: readRate a
// second, in bursts of readBurst. Touched only on the connection's read loop.
type readBudget struct {
	tokens float64
	last   time.Time
}

// allowRead spends one of the connection's read tokens. A refusal is answered with a
// rate_limited error frame (and retry_after_ms) and adds to the refusals that close an
// abusive connection, as a refused send does.
func (c *client) allowRead(ref string) bool {
	err := c.reads.take(time.Now())
	if err == nil {
		return true
	}
	c.s.countLimited(err)
	if c.debt++; c.debt > float64(c.s.cfg.FrameBurst) {
		c.close(disconnectRateLimited)
		return false
	}
	c.send(encodeFrame(limitedFrame{Type: "error", Ref: ref, Code: codeRateLimited, Message: err.Error(),
		RetryAfterMS: max(err.retryAfter.Milliseconds(), 1)}))
	return false
}

// take spends a token, or returns a rate limit error saying when one is back.
func (b *readBudget) take(now time.Time) *rateLimitedError {
	if b.last.IsZero() {
		b.tokens = readBurst
	} else {
		b.tokens = min(readBurst, b.tokens+now.Sub(b.last).Seconds()*readRate)
	}
	b.last = now
	if b.tokens < 1 {
		wait := time.Duration((1 - b.tokens) / readRate * float64(time.Second))
		return &rateLimitedError{kind: limitKindRead, retryAfter: wait}
	}
	b.tokens--
	return nil
}
