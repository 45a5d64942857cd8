package client

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// SendOption adjusts a send.
type SendOption func(url.Values)

// From names the sender delivered as the message's from (an id). Without it a backend's
// message has no from.
func From(id string) SendOption {
	return func(q url.Values) { q.Set("from", id) }
}

// Ephemeral makes a send publish only: no stream keeps the message (not the recipient's,
// not the room's), so it has no id, is never replayed, and a connection that is catching up
// when it arrives does not get it. For what is stale a second later: typing, cursors.
func Ephemeral() SendOption {
	return func(q url.Values) { q.Set("ephemeral", "true") }
}

// sendKey is a send's Idempotency-Key: a fresh one, none for an ephemeral send (nothing
// stores it, so the server takes no key, and a repeat of it is harmless enough) or from a
// client that never retries (the key serves only its retries, and every key costs the
// deployment a record in Redis for --idempotency-ttl).
func (c *Client) sendKey(q url.Values) string {
	if q.Get("ephemeral") == "true" || c.retries == 0 {
		return ""
	}
	return newKey()
}

// newKey returns a random key, 128 bits in base64url: one per logical send, shared by its
// attempts.
func newKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func sendQuery(opts []SendOption) url.Values {
	if len(opts) == 0 {
		return nil
	}
	q := url.Values{}
	for _, o := range opts {
		o(q)
	}
	return q
}

// SendToUser sends a direct message to user, on every device and node, and returns its id
// in the user's stream (POST /v1/users/{user}/messages); with Ephemeral, whose message has
// no id, "". It carries a fresh Idempotency-Key, so a retry (a lost answer, 502, 503, 504)
// delivers it once; an ephemeral send is never retried.
func (c *Client) SendToUser(ctx context.Context, user string, p Payload, opts ...SendOption) (string, error) {
	var answer struct {
		ID string `json:"id"`
	}
	q := sendQuery(opts)
	err := c.json(ctx, call{method: http.MethodPost, path: "/v1/users/" + seg(user) + "/messages", query: q, payload: &p, idemKey: c.sendKey(q)}, &answer)
	return answer.ID, err
}

// RoomSent is the answer to a room send.
type RoomSent struct {
	// Recipients is how many members' streams took the message (with Ephemeral, how many
	// members' channels it was published to).
	Recipients int `json:"recipients"`
	// HistoryID is the message's id in the room's history (RoomMessages), which every
	// member's copy carries as Message.HistoryID; "" for an ephemeral message or on a
	// server that keeps no room history.
	HistoryID string `json:"history_id"`
}

// SendToRoom sends a message to every member of room (POST /v1/rooms/{room}/messages),
// retried under an Idempotency-Key as SendToUser is.
func (c *Client) SendToRoom(ctx context.Context, room string, p Payload, opts ...SendOption) (RoomSent, error) {
	var answer RoomSent
	q := sendQuery(opts)
	err := c.json(ctx, call{method: http.MethodPost, path: "/v1/rooms/" + seg(room) + "/messages", query: q, payload: &p, idemKey: c.sendKey(q)}, &answer)
	return answer, err
}

// BatchItem is one message of a batch: exactly one of User and Room, and exactly one of
// Data (JSON) and Binary.
type BatchItem struct {
	User   string          `json:"user,omitempty"`
	Room   string          `json:"room,omitempty"`
	From   string          `json:"from,omitempty"`
	Data   json.RawMessage `json:"data,omitempty"`
	Binary []byte          `json:"data_b64,omitempty"`
}

// BatchResult is one item's answer: ID for a direct message, Recipients for a room
// message, or Err when Redis did not accept that item (the others were accepted).
type BatchResult struct {
	ID         string `json:"id,omitempty"`
	Recipients int    `json:"recipients,omitempty"`
	Err        *Error `json:"-"`
}

// MaxBatch is the most items one SendBatch may carry.
const MaxBatch = 1000

// SendBatch sends many messages in one round trip (POST /v1/messages) and returns one result
// per item, in order. The server checks every item before it accepts any: one bad item
// refuses the whole batch (an *Error whose message names its index). It is retried under an
// Idempotency-Key: a retry delivers each item once.
func (c *Client) SendBatch(ctx context.Context, items []BatchItem) ([]BatchResult, error) {
	body, err := json.Marshal(struct {
		Messages []BatchItem `json:"messages"`
	}{items})
	if err != nil {
		return nil, fmt.Errorf("switchboard: encoding the batch: %w", err)
	}
	var answer struct {
		Results []struct {
			BatchResult
			Error *struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		} `json:"results"`
	}
	p := RawJSON(body)
	if err := c.json(ctx, call{method: http.MethodPost, path: "/v1/messages", payload: &p, idemKey: c.sendKey(nil)}, &answer); err != nil {
		return nil, err
	}
	out := make([]BatchResult, len(answer.Results))
	for i, r := range answer.Results {
		out[i] = r.BatchResult
		if r.Error != nil {
			out[i].Err = &Error{Status: http.StatusServiceUnavailable, Code: r.Error.Code, Message: r.Error.Message}
		}
	}
	return out, nil
}

// Message is a stored message, as the WebSocket delivers it.
type Message struct {
	// ID is the message's id in the user's stream, <ms>-<seq> (in the room's history, for a
	// message read with RoomMessages).
	ID string `json:"id"`
	// From is the sender, if any; Room is set for a room message.
	From string `json:"from,omitempty"`
	Room string `json:"room,omitempty"`
	// To is the recipient, on the sender's own copy of a direct message its client sent.
	To string `json:"to,omitempty"`
	// HistoryID is a room message's id in the room's history, on a member's copy; it lets a
	// reader of both drop what it has twice.
	HistoryID string `json:"history_id,omitempty"`
	// Dedupe is set on a message sent under an Idempotency-Key (as Send does): the same on
	// every retry of the send, so that a retry stored again after a Redis failover, under
	// another ID, can be told for what it is.
	Dedupe string `json:"dedupe,omitempty"`
	// Data is a JSON payload (a text payload is a JSON string); nil for a binary one.
	Data json.RawMessage `json:"data,omitempty"`
	// Binary is a binary payload (data_b64, decoded: encoding/json reads a []byte as
	// standard base64); nil for a JSON one.
	Binary []byte `json:"data_b64,omitempty"`
}

// MaxMessagesLimit is the largest limit Messages accepts.
const MaxMessagesLimit = 1000

// Messages reads user's stored messages after since (empty: from the oldest kept), oldest
// first, at most limit of them (0: the server's default, 100; at most MaxMessagesLimit):
// GET /v1/users/{user}/messages. Page on by passing the last id as since.
func (c *Client) Messages(ctx context.Context, user, since string, limit int) ([]Message, error) {
	q := url.Values{}
	if since != "" {
		q.Set("since", since)
	}
	if limit != 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var answer struct {
		Messages []Message `json:"messages"`
	}
	err := c.json(ctx, call{method: http.MethodGet, path: "/v1/users/" + seg(user) + "/messages", query: q, idempotent: true}, &answer)
	return answer.Messages, err
}

// Presence is whether a user is connected anywhere.
type Presence struct {
	// Online: some node holds one of the user's connections.
	Online bool `json:"online"`
	// Connections counts the user's sockets on all nodes.
	Connections int `json:"connections"`
}

// Presence answers whether user is connected (GET /v1/users/{user}/presence).
func (c *Client) Presence(ctx context.Context, user string) (Presence, error) {
	var p Presence
	err := c.json(ctx, call{method: http.MethodGet, path: "/v1/users/" + seg(user) + "/presence", idempotent: true}, &p)
	return p, err
}

// Rooms lists the rooms user is a member of (GET /v1/users/{user}/rooms).
func (c *Client) Rooms(ctx context.Context, user string) ([]string, error) {
	var answer struct {
		Rooms []string `json:"rooms"`
	}
	err := c.json(ctx, call{method: http.MethodGet, path: "/v1/users/" + seg(user) + "/rooms", idempotent: true}, &answer)
	return answer.Rooms, err
}

// Members lists room's members; an empty or unknown room has none (GET
// /v1/rooms/{room}/members).
func (c *Client) Members(ctx context.Context, room string) ([]string, error) {
	var answer struct {
		Members []string `json:"members"`
	}
	err := c.json(ctx, call{method: http.MethodGet, path: "/v1/rooms/" + seg(room) + "/members", idempotent: true}, &answer)
	return answer.Members, err
}

// AddMember makes user a member of room (PUT /v1/rooms/{room}/members/{user}). Adding a
// member again changes nothing, so the call is retried.
func (c *Client) AddMember(ctx context.Context, room, user string) error {
	_, _, err := c.do(ctx, call{method: http.MethodPut, path: "/v1/rooms/" + seg(room) + "/members/" + seg(user), idempotent: true})
	return err
}

// RemoveMember takes user out of room (DELETE /v1/rooms/{room}/members/{user}). Removing a
// non-member changes nothing, so the call is retried.
func (c *Client) RemoveMember(ctx context.Context, room, user string) error {
	_, _, err := c.do(ctx, call{method: http.MethodDelete, path: "/v1/rooms/" + seg(room) + "/members/" + seg(user), idempotent: true})
	return err
}

// Disconnected is the answer of Disconnect.
type Disconnected struct {
	// Count is how many of the user's sockets were closed, on every node.
	Count int
	// RevokedBefore, with revoke, is the instant before which the user's tokens are
	// refused.
	RevokedBefore time.Time
}

// Disconnect closes every connection of user, on every node, with close code 4001 (its
// clients must not reconnect by themselves): DELETE /v1/users/{user}/connections. With
// revoke, the user's tokens issued before now are refused from then on, first. A repeat
// closes whatever connected since, which is what the caller asked for, so it is retried.
func (c *Client) Disconnect(ctx context.Context, user string, revoke bool) (Disconnected, error) {
	var q url.Values
	if revoke {
		q = url.Values{"revoke": {"true"}}
	}
	var answer struct {
		Disconnected  int       `json:"disconnected"`
		RevokedBefore time.Time `json:"revoked_before"`
	}
	err := c.json(ctx, call{method: http.MethodDelete, path: "/v1/users/" + seg(user) + "/connections", query: q, idempotent: true}, &answer)
	return Disconnected{Count: answer.Disconnected, RevokedBefore: answer.RevokedBefore}, err
}

// json makes the call and decodes its answer into v.
func (c *Client) json(ctx context.Context, cl call, v any) error {
	_, body, err := c.do(ctx, cl)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("switchboard: %s %s: the answer is not the JSON expected: %w", cl.method, cl.path, err)
	}
	return nil
}
