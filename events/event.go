package events

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/switchboard-dev/switchboard/subscriptions"
)

// Type is the kind of a backend event, as the webhook receiver sees it in "type".
type Type string

// The event types of docs/protocol.md, "Backend events".
const (
	// UserOnline: the user's first connection anywhere in the deployment opened.
	UserOnline Type = "user.online"
	// UserOffline: the user's last connection anywhere closed, or its node died.
	UserOffline Type = "user.offline"
	// RoomJoined: the user became a member of Room.
	RoomJoined Type = "room.joined"
	// RoomLeft: the user stopped being a member of Room.
	RoomLeft Type = "room.left"
	// ClientEvent: a client sent an "event" frame with Name and Data.
	ClientEvent Type = "client.event"
)

// Values of Event.By: who changed a room membership.
const (
	// ByClient: the user's own WebSocket frame.
	ByClient = "client"
	// ByAPI: a backend through the HTTP API.
	ByAPI = "api"
)

// ReasonNodeGone is the Reason of a user.offline that NodeGone inferred from a dead node
// rather than from a connection that closed.
const ReasonNodeGone = "node_gone"

// TimeLayout is how Event.Time is written: RFC 3339 with milliseconds, in UTC.
const TimeLayout = "2006-01-02T15:04:05.000Z07:00"

// Event is one backend event, encoded to the webhook as the JSON object docs/protocol.md describes. Emit
// fills ID, Node and Time when they are empty; only the fields of its Type are encoded.
type Event struct {
	// ID is unique per event (128 random bits, hex); receivers dedupe by it.
	ID string
	// Type says what happened and which of the fields below are set.
	Type Type
	// User is the user the event is about.
	User string
	// Node is the node that saw it happen.
	Node string
	// Time is when it happened, sent with millisecond precision in UTC.
	Time time.Time
	// Room is the room of room.joined and room.left.
	Room string
	// By says who changed the membership in room.joined and room.left: ByClient or ByAPI.
	By string
	// Name is the client's event name in client.event (the id pattern).
	Name string
	// Data is the client's JSON payload in client.event, sent as it came (compacted).
	Data json.RawMessage
	// Reason is set on a user.offline that was inferred rather than observed (ReasonNodeGone).
	Reason string
}

// wireEvent is the JSON form; it fixes the field order receivers see.
type wireEvent struct {
	ID     string          `json:"id"`
	Type   Type            `json:"type"`
	User   string          `json:"user"`
	Node   string          `json:"node"`
	Time   string          `json:"time"`
	Room   string          `json:"room,omitempty"`
	By     string          `json:"by,omitempty"`
	Name   string          `json:"name,omitempty"`
	Data   json.RawMessage `json:"data,omitempty"`
	Reason string          `json:"reason,omitempty"`
}

// MarshalJSON encodes the event as the webhook receives it, leaving out the fields that do
// not belong to its type.
func (e Event) MarshalJSON() ([]byte, error) {
	w := wireEvent{ID: e.ID, Type: e.Type, User: e.User, Node: e.Node, Time: e.Time.UTC().Format(TimeLayout)}
	switch e.Type {
	case RoomJoined, RoomLeft:
		w.Room, w.By = e.Room, e.By
	case ClientEvent:
		w.Name, w.Data = e.Name, e.Data
	case UserOffline:
		w.Reason = e.Reason
	}
	return json.Marshal(w)
}

// UnmarshalJSON decodes an event as the webhook receives it, for receivers written in Go.
func (e *Event) UnmarshalJSON(b []byte) error {
	var w wireEvent
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	t, err := time.Parse(time.RFC3339Nano, w.Time)
	if err != nil {
		return fmt.Errorf("event time: %w", err)
	}
	*e = Event{ID: w.ID, Type: w.Type, User: w.User, Node: w.Node, Time: t, Room: w.Room,
		By: w.By, Name: w.Name, Data: w.Data, Reason: w.Reason}
	return nil
}

// validate checks what the receiver relies on; it does not limit sizes, which is the
// service's job (--max-message-bytes).
func (e *Event) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidEvent, fmt.Sprintf(format, args...))
	}
	if e.ID == "" || len(e.ID) > maxIDLength {
		return bad("id %q", e.ID)
	}
	if !validID(e.User) {
		return bad("user %q", e.User)
	}
	if !validID(e.Node) {
		return bad("node %q", e.Node)
	}
	switch e.Type {
	case UserOnline, UserOffline:
	case RoomJoined, RoomLeft:
		if !validID(e.Room) {
			return bad("room %q", e.Room)
		}
		if e.By != ByClient && e.By != ByAPI {
			return bad("by %q: want %q or %q", e.By, ByClient, ByAPI)
		}
	case ClientEvent:
		if !validID(e.Name) {
			return bad("name %q", e.Name)
		}
		if len(e.Data) == 0 || !json.Valid(e.Data) {
			return bad("data is missing or not JSON")
		}
	default:
		return bad("type %q", e.Type)
	}
	return nil
}

// maxIDLength is the longest user id, room name, event name or node id.
const maxIDLength = subscriptions.MaxIDLength

// validID is the id pattern of docs/protocol.md ("Names and ids"),
// ^[A-Za-z0-9._@+-]{1,128}$, shared with the rest of the service. Node ids follow it too, which matters here: the presence scripts rely on a
// node id never containing "/".
func validID(s string) bool { return subscriptions.ValidID(s) }

// newID returns a random 128-bit id. Random rather than the stream id: stream ids restart
// after Redis loses its data or fails over to a lagging replica, and a reused id would make a
// deduping receiver silently discard a new event.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails since Go 1.24
	return hex.EncodeToString(b[:])
}
