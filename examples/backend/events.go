package main

import (
	"encoding/json"
	"net/http"
	"sync"

	"github.com/switchboard-dev/switchboard/events"
)

// events receives the webhook's batches: {"events":[...]}. Delivery is at least once, so an
// event already handled is skipped by its id. Any 2xx acknowledges the whole batch; anything
// else makes Switchboard send it again later, so answer 2xx only once every event is handled.
func (b *Backend) events(w http.ResponseWriter, r *http.Request, body []byte) {
	var req struct {
		Events []events.Event `json:"events"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "the body is not an event batch")
		return
	}
	for _, e := range req.Events {
		if !b.seen.add(e.ID) {
			b.log.Debug("duplicate event skipped", "id", e.ID)
			continue
		}
		b.handleEvent(e)
	}
	w.WriteHeader(http.StatusNoContent)
}

// handleEvent is where an app reacts to an event; the example logs it (never its data, which
// is the user's).
func (b *Backend) handleEvent(e events.Event) {
	attrs := []any{"id", e.ID, "type", string(e.Type), "user", e.User, "node", e.Node}
	switch e.Type {
	case events.RoomJoined, events.RoomLeft:
		attrs = append(attrs, "room", e.Room, "by", e.By)
	case events.ClientEvent:
		attrs = append(attrs, "name", e.Name, "data_bytes", len(e.Data))
	case events.UserOffline:
		if e.Reason != "" {
			attrs = append(attrs, "reason", e.Reason)
		}
	}
	b.log.Info("event", attrs...)
}

// dedupe remembers the last size event ids, so memory stays bounded however long the backend
// runs. Switchboard retries a batch for up to 24 h; a real app that must never act twice
// keeps the ids in its database with a unique key, for that long.
type dedupe struct {
	mu   sync.Mutex
	ids  map[string]struct{}
	ring []string // the ids in arrival order; the oldest is overwritten first
	next int
}

func newDedupe(size int) *dedupe {
	return &dedupe{ids: make(map[string]struct{}, size), ring: make([]string, size)}
}

// add records id and reports whether it was new. An empty id, which Switchboard never
// sends, cannot be remembered and counts as new.
func (d *dedupe) add(id string) bool {
	if id == "" {
		return true
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.ids[id]; ok {
		return false
	}
	if old := d.ring[d.next]; old != "" {
		delete(d.ids, old)
	}
	d.ring[d.next] = id
	d.next = (d.next + 1) % len(d.ring)
	d.ids[id] = struct{}{}
	return true
}
