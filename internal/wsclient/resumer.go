package wsclient

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"time"
)

// Resumer keeps one user connected: whenever its connection ends it reconnects, with
// backoff and jitter, and resumes after the last message id it saw, as docs/protocol.md asks of
// clients. It records every message, welcome and close code, so tests can count them; as
// the protocol asks of clients, it drops a message that repeats one it got (its "dedupe"
// token, a backend's retry stored again after a Redis failover), and counts it (Repeats).
type Resumer struct {
	// URL returns the WebSocket URL of the attempt-th connection, resuming after since ("" on
	// the first connection that has seen nothing). Rotating nodes here moves the client.
	URL func(attempt int, since string) string
	// RoomURL, when set, is used instead of URL, with the big rooms' positions as the
	// room_since parameter wants them ("" for none).
	RoomURL func(attempt int, since, roomSince string) string
	Options Options

	mu       sync.Mutex
	last     string
	rooms    map[string]string // a position per big room
	messages []Frame
	welcomes []Frame
	closes   []uint16
	changed  chan struct{}
	recent   []string // the dedupe tokens of the last messages, oldest first
	repeats  int
}

// Run connects and reconnects until ctx ends or the server closes with a code that forbids
// reconnecting (4001, or 1008 policy violation).
func (r *Resumer) Run(ctx context.Context) error {
	backoff := 10 * time.Millisecond
	for attempt := 0; ctx.Err() == nil; attempt++ {
		r.mu.Lock()
		since, roomSince := r.last, r.roomSinceLocked()
		r.mu.Unlock()
		u := ""
		if r.RoomURL != nil {
			u = r.RoomURL(attempt, since, roomSince)
		} else {
			u = r.URL(attempt, since)
		}
		c, err := Dial(u, r.Options)
		if err != nil {
			var refused *ErrRefused
			if errors.As(err, &refused) && refused.Status/100 == 4 {
				return err
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(backoff/2 + rand.N(backoff/2+1)):
			}
			backoff = min(2*backoff, 500*time.Millisecond)
			continue
		}
		code := r.read(ctx, c)
		if code == 4001 || code == 1008 {
			return nil
		}
		if code == 1012 || code == 1013 {
			backoff = 10 * time.Millisecond // told to reconnect: do it now
		}
	}
	return nil
}

// read consumes one connection until it ends and returns its close code.
func (r *Resumer) read(ctx context.Context, c *Conn) uint16 {
	defer c.Close()
	for {
		f, err := c.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return 0
			}
			code, _ := c.CloseCode()
			r.record(func() { r.closes = append(r.closes, code) })
			return code
		}
		switch f.Type {
		case "welcome":
			r.record(func() {
				r.welcomes = append(r.welcomes, f)
				if r.last == "" && f.LastID != "" {
					r.last = f.LastID
				}
				for _, b := range f.BigRooms {
					r.setRoomLocked(b.Room, b.LastID)
				}
			})
		case "room_mode":
			r.record(func() {
				if f.Big {
					r.setRoomLocked(f.Room, f.LastID)
				} else {
					delete(r.rooms, f.Room)
				}
			})
		case "message":
			r.record(func() {
				if !r.repeatLocked(f) {
					r.messages = append(r.messages, f)
				}
				switch {
				case f.Ephemeral:
				case f.Big:
					r.setRoomLocked(f.Room, f.ID)
				default:
					r.last = f.ID
				}
			})
		}
	}
}

// repeatLocked reports whether m repeats a message received before under another id, by
// its dedupe token, and remembers the token of one that does not.
func (r *Resumer) repeatLocked(m Frame) bool {
	if m.Dedupe == "" {
		return false
	}
	for _, t := range r.recent {
		if t == m.Dedupe {
			r.repeats++
			return true
		}
	}
	if len(r.recent) == 64 {
		r.recent = append(r.recent[:0], r.recent[1:]...)
	}
	r.recent = append(r.recent, m.Dedupe)
	return false
}

// Repeats returns how many messages were dropped as repeats of one received before.
func (r *Resumer) Repeats() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.repeats
}

// setRoomLocked records a big room's position: the last big message of the room, or
// where a welcome or room_mode frame says the connection starts it.
func (r *Resumer) setRoomLocked(room, id string) {
	if r.rooms == nil {
		r.rooms = make(map[string]string)
	}
	r.rooms[room] = id
}

// roomSinceLocked is the room_since parameter of the positions held.
func (r *Resumer) roomSinceLocked() string {
	s := ""
	for room, id := range r.rooms {
		if s != "" {
			s += ","
		}
		s += room + ":" + id
	}
	return s
}

func (r *Resumer) record(f func()) {
	r.mu.Lock()
	f()
	if r.changed != nil {
		close(r.changed)
		r.changed = nil
	}
	r.mu.Unlock()
}

// Messages returns the messages received so far, in arrival order.
func (r *Resumer) Messages() []Frame {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Frame(nil), r.messages...)
}

// Welcomes returns the welcome frames received so far.
func (r *Resumer) Welcomes() []Frame {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Frame(nil), r.welcomes...)
}

// Closes returns the close codes of the connections that ended.
func (r *Resumer) Closes() []uint16 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]uint16(nil), r.closes...)
}

// WaitFor waits until cond holds for the resumer's state, or ctx ends.
func (r *Resumer) WaitFor(ctx context.Context, cond func(r *Resumer) bool) error {
	for {
		r.mu.Lock()
		if r.changed == nil {
			r.changed = make(chan struct{})
		}
		ch := r.changed
		r.mu.Unlock()
		if cond(r) {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
