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

// roomReadQueue reads pages of big rooms' streams for roomSubs (a start, a catch-up, the
// rest of a room turning small), many per round trip, off the reader and the sockets'
// goroutines. A roomSub is queued at most once at a time (roomSub.inFlight).
type roomReadQueue struct {
	hub   *Hub
	reads *pipeline.Batcher[roomRead]
}

type roomRead struct {
	rs   *roomSub
	from StreamID
	user string
}

func newRoomReadQueue(h *Hub) *roomReadQueue {
	q := &roomReadQueue{hub: h}
	q.reads = pipeline.New(pipeline.Config[roomRead]{Send: q.read, MaxBatch: catchupBatch})
	return q
}

func (q *roomReadQueue) push(rs *roomSub) { _ = q.reads.Add(roomRead{rs: rs}) }

func (q *roomReadQueue) run(ctx context.Context, workers int) { q.reads.Run(ctx, workers) }

//go:embed roomhistory.lua
var roomHistoryLua string

// roomHistoryScript reads a page of a room's stream, bounded in entries and bytes, checking
// membership in the same call (roomhistory.lua): a big room's catch-up, many rooms' pages
// in one pipeline. A client's history read does without it (RoomHistory).
var roomHistoryScript = redis.NewScript(roomHistoryLua)

// read reads, in one pipeline, a page of each roomSub's room stream from where it stands
// (inclusive, to prove nothing was trimmed past it), checking membership in the same call
// (roomhistory.lua), and hands each its page.
func (q *roomReadQueue) read(ctx context.Context, batch []*roomRead) {
	h := q.hub
	for _, r := range batch {
		r.rs.s.mu.Lock()
		r.from, r.user = r.rs.readFrom, r.rs.s.user
		r.rs.s.mu.Unlock()
	}
	cmds := make([]*redis.Cmd, len(batch))
	modes := make([]*redis.SliceCmd, len(batch))
	scripts := pipeline.Scripts{Client: h.rdb}
	err := scripts.Exec(ctx, len(batch), func(pipe redis.Pipeliner, i int) (redis.Cmder, *redis.Script) {
		r := batch[i]
		from := "-"
		if !r.from.IsZero() {
			from = r.from.String()
		}
		keys := []string{h.keys.roomHistory(r.rs.room), h.keys.roomMembers(r.rs.room)}
		cmds[i] = pipe.EvalSha(ctx, roomHistoryScript.Hash(), keys, "fwd", from, historyPage+1,
			max(1, h.cfg.ReplayBytes/2), r.user)
		if modes[i] == nil {
			// After the page: a change of mode it cannot see is one its entries precede.
			modes[i] = pipe.HMGet(ctx, h.keys.roomMode(r.rs.room), "big", "from", "until")
		}
		return cmds[i], roomHistoryScript
	})
	if err != nil {
		h.obs.ObserveRedisError()
	}
	for i, r := range batch {
		if err != nil {
			r.rs.pageRead(r.from, nil, false, false, fmt.Errorf("%w: read room stream: %w", ErrUnavailable, err))
			continue
		}
		msgs, more, notMember, perr := parseRoomPage(cmds[i].Val())
		if perr == nil && !notMember {
			r.rs.applyMode(parseModeHash(modes[i].Val()))
		}
		r.rs.pageRead(r.from, msgs, more, notMember, perr)
	}
}

// modeHash is a room's mode as its hash holds it.
type modeHash struct {
	big         bool
	from, until StreamID
}

func parseModeHash(v []any) modeHash {
	var m modeHash
	if len(v) != 3 {
		return m
	}
	s := func(x any) string { str, _ := x.(string); return str }
	m.big = s(v[0]) == "1"
	m.from, _ = ParseStreamID(s(v[1]))
	m.until, _ = ParseStreamID(s(v[2]))
	return m
}

// parseRoomPage decodes roomhistory.lua's answer into big room envelopes.
func parseRoomPage(v any) (msgs []Message, more, notMember bool, err error) {
	top, _ := v.([]any)
	if len(top) == 1 && top[0] == int64(-1) {
		return nil, false, true, nil
	}
	if len(top) != 2 {
		return nil, false, false, fmt.Errorf("%w: the room history script answered %v", ErrUnavailable, v)
	}
	list, _ := top[1].([]any)
	for _, x := range list {
		pair, _ := x.([]any)
		if len(pair) != 2 {
			return nil, false, false, fmt.Errorf("%w: the room history script answered a malformed entry", ErrUnavailable)
		}
		id, _ := pair[0].(string)
		tail, _ := pair[1].(string)
		sid, err := ParseStreamID(id)
		if err != nil || !utf8.ValidString(tail) {
			continue
		}
		msgs = append(msgs, Message{ID: sid, Payload: bigEnvelope(id, tail), Dedupe: dedupeOf(tail)})
	}
	return msgs, top[0] == int64(1), false, nil
}

// roomMode is what SubscribeRooms read of one of the user's rooms.
type roomMode struct {
	room      string
	big       bool
	start     StreamID // where the connection starts the room
	from      StreamID // where the room last turned big
	given     bool     // the client gave a position
	recovered bool     // the position is still in the stream (or not older than its newest)
	// anchor: start is an entry of the stream (or 0-0), so the first read must begin with
	// it, or the stream was trimmed past it; a resume's since is not.
	anchor bool
}

// modesRead is one connection's read of its rooms' modes, and its answer.
type modesRead struct {
	rooms      []string
	positions  map[string]StreamID
	resumeFrom *StreamID // a resume's since: where a big room without a position starts at the earliest
	modes      []*redis.SliceCmd
	tops       []*redis.XMessageSliceCmd
	found      []*redis.XMessageSliceCmd
	out        []roomMode
	err        error
}

// modesReads batches the room mode reads of new connections: in a connect storm they share
// round trips, as the room sets read for the welcome do (roomsets.go).
type modesReads = pipeline.Batcher[modesRead]

func newModesReads(h *Hub) *modesReads {
	return pipeline.New(pipeline.Config[modesRead]{MaxBatch: 64, CallersLead: true,
		Send: func(ctx context.Context, batch []*modesRead) { h.sendModeReads(ctx, batch) }})
}

// sendModeReads reads, in one pipeline, each room's mode and newest id, and whether each
// given position is still in the room's stream, for every read of the batch.
func (h *Hub) sendModeReads(ctx context.Context, batch []*modesRead) {
	_, err := h.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, r := range batch {
			r.modes = make([]*redis.SliceCmd, len(r.rooms))
			r.tops = make([]*redis.XMessageSliceCmd, len(r.rooms))
			r.found = make([]*redis.XMessageSliceCmd, len(r.rooms))
			for i, room := range r.rooms {
				r.modes[i] = p.HMGet(ctx, h.keys.roomMode(room), "big", "from")
				r.tops[i] = p.XRevRangeN(ctx, h.keys.roomHistory(room), "+", "-", 1)
				if pos, ok := r.positions[room]; ok && !pos.IsZero() {
					r.found[i] = p.XRangeN(ctx, h.keys.roomHistory(room), pos.String(), pos.String(), 1)
				}
			}
		}
		return nil
	})
	for _, r := range batch {
		if err != nil && err != redis.Nil {
			r.err = fmt.Errorf("%w: read room modes: %w", ErrUnavailable, err)
			continue
		}
		r.out = r.decode()
		r.modes, r.tops, r.found = nil, nil, nil
	}
}

// readRoomModes reads each of rooms' mode and newest id, and whether each given position
// is still in the room's stream, through the batched reads. With resumeFrom, a big room
// without a position starts where it turned big or at *resumeFrom, whichever is later.
func (h *Hub) readRoomModes(ctx context.Context, rooms []string, positions map[string]StreamID, resumeFrom *StreamID) ([]roomMode, error) {
	r, err := h.modesReads.Do(ctx, modesRead{rooms: rooms, positions: positions, resumeFrom: resumeFrom})
	switch {
	case errors.Is(err, pipeline.ErrClosed):
		return nil, ErrClosed
	case err != nil:
		return nil, fmt.Errorf("%w: read room modes: %w", ErrUnavailable, err)
	}
	return r.out, r.err
}

// decode turns the read's answers into roomModes.
func (r *modesRead) decode() []roomMode {
	rooms, positions, modes, tops, found := r.rooms, r.positions, r.modes, r.tops, r.found
	out := make([]roomMode, len(rooms))
	for i, room := range rooms {
		m := roomMode{room: room}
		v := modes[i].Val()
		if len(v) == 2 {
			big, _ := v[0].(string)
			m.big = big == "1"
			fromS, _ := v[1].(string)
			from, _ := ParseStreamID(fromS)
			m.from = from
			var top StreamID
			if t := tops[i].Val(); len(t) > 0 {
				top, _ = ParseStreamID(t[0].ID)
			}
			m.start, m.anchor = top, true
			if pos, ok := positions[room]; ok {
				m.given = true
				m.recovered = pos.IsZero() || len(found[i].Val()) > 0 || !pos.Less(top)
				m.start = pos
				if pos.Less(from) {
					// Before the room turned big: what came before is in the user's stream.
					m.start, m.recovered = from, true
				}
				m.anchor = m.recovered
			} else if r.resumeFrom != nil && m.big {
				// Away since before the turn: from the turn, whose earlier messages are in
				// the user's stream; else from since, by time, since a client that was
				// here after the turn knew the room was big and got what it sent while
				// connected (the room's ids and the user's come from one clock on a
				// single Redis; on a cluster, from the masters' clocks).
				m.start = from
				if from.Less(*r.resumeFrom) {
					m.start, m.anchor = *r.resumeFrom, false
				}
			}
		}
		out[i] = m
	}
	return out
}
