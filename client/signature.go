package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/switchboard-dev/switchboard/events"
)

// Headers of the signed requests Switchboard sends to a backend: the events webhook and the
// authorize, connect and rpc hooks.
const (
	HeaderTimestamp = events.HeaderTimestamp
	HeaderSignature = events.HeaderSignature
)

// SignatureTolerance is how far from the receiver's clock a request's timestamp may be
// (either way) for VerifyRequest: a captured request cannot be replayed after it.
const SignatureTolerance = 5 * time.Minute

// ErrBadSignature is wrapped by the errors of VerifySignature and VerifyRequest for a
// request that is unsigned, wrongly signed or signed too long ago. Answer it with 401 and
// never act on the body.
var ErrBadSignature = events.ErrBadSignature

// VerifySignature checks a signed request from Switchboard: the HMAC-SHA256 with secret
// (--webhook-secret) over the timestamp and the exact body bytes, compared in constant
// time, and a timestamp within tolerance of now (tolerance <= 0 skips that check). It is
// the server's own check (events.Verify).
func VerifySignature(secret string, h http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	return events.Verify(secret, h, body, now, tolerance)
}

// VerifyRequest reads r's body, at most maxBytes of it, and verifies its signature with
// SignatureTolerance. It returns the body only when the request passes; a body over
// maxBytes is refused. Read the events or the hook's question from the returned bytes, not
// from r.Body.
func VerifyRequest(secret string, r *http.Request, maxBytes int64) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("switchboard: reading the request body: %w", err)
	}
	if int64(len(body)) > maxBytes {
		return nil, errors.New("switchboard: the request body is larger than allowed")
	}
	if err := VerifySignature(secret, r.Header, body, time.Now(), SignatureTolerance); err != nil {
		return nil, err
	}
	return body, nil
}

// Event is one backend event of the webhook (docs/protocol.md, "Backend events"). Dedupe
// by ID: delivery is at least once.
type Event struct {
	ID   string `json:"id"`
	Type string `json:"type"` // user.online, user.offline, room.joined, room.left, client.event
	User string `json:"user"`
	Node string `json:"node"`
	// Time is when it happened (RFC 3339, milliseconds).
	Time time.Time `json:"time"`
	// Room and By ("client" or "api") are set on room.joined and room.left.
	Room string `json:"room,omitempty"`
	By   string `json:"by,omitempty"`
	// Name and Data are a client.event's name and payload.
	Name string          `json:"name,omitempty"`
	Data json.RawMessage `json:"data,omitempty"`
	// Reason is set on a user.offline inferred from a dead node ("node_gone").
	Reason string `json:"reason,omitempty"`
}

// DecodeEvents reads the events of a webhook request's body ({"events":[...]}), which
// VerifyRequest returned.
func DecodeEvents(body []byte) ([]Event, error) {
	var b struct {
		Events []Event `json:"events"`
	}
	if err := json.Unmarshal(body, &b); err != nil {
		return nil, fmt.Errorf("switchboard: the events body: %w", err)
	}
	return b.Events, nil
}
