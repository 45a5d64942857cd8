package client

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Error codes the API answers with (docs/protocol.md, "Errors"). Error.Code holds one of
// them, or a code this version does not know yet.
const (
	CodeBadRequest    = "bad_request"
	CodeBadJSON       = "bad_json"
	CodeInvalidID     = "invalid_id"
	CodeUnauthorized  = "unauthorized"
	CodeForbidden     = "forbidden"
	CodeNotFound      = "not_found"
	CodeNotAllowed    = "method_not_allowed"
	CodeTooLarge      = "too_large"
	CodeUnsupported   = "unsupported_media_type"
	CodeRateLimited   = "rate_limited"
	CodeQuotaExceeded = "quota_exceeded"
	CodeQueueFull     = "queue_full"
	CodeUnavailable   = "unavailable"
	CodeInternal      = "internal"
	// Idempotency-Key refusals: a malformed key, the key reused with another request, and a
	// send under the key still under way (retried).
	CodeInvalidIdempotencyKey = "invalid_idempotency_key"
	CodeIdempotencyConflict   = "idempotency_conflict"
	CodeIdempotencyInProgress = "idempotency_in_progress"
	codeUnknownResponse       = "" // an answer without the API's error body (a proxy's, say)
)

// Error is a refusal by the API: its HTTP status and the code and message of the body
// {"error":{"code","message"}}. Get it with errors.As. An answer that is not the API's
// error body (from a proxy in front of it, say) has an empty Code and the start of the body
// as Message.
type Error struct {
	// Status is the HTTP status, 400 to 599.
	Status int
	// Code is the API's machine-readable reason, one of the Code constants.
	Code string
	// Message is for people; it may change between versions.
	Message string
	// RetryAfter is the answer's Retry-After, when it had one: when the call may succeed.
	RetryAfter time.Duration
}

// Error says the status, the code and the message, as "switchboard: 400 invalid_id: ...".
func (e *Error) Error() string {
	if e.Code == codeUnknownResponse {
		return fmt.Sprintf("switchboard: %d %s: %s", e.Status, http.StatusText(e.Status), e.Message)
	}
	return fmt.Sprintf("switchboard: %d %s: %s", e.Status, e.Code, e.Message)
}

// Temporary reports whether the same call may succeed later unchanged: Redis or the
// backend was unavailable, or a rate limit refused it.
func (e *Error) Temporary() bool {
	switch e.Status {
	case http.StatusTooManyRequests:
		return e.Code != CodeQuotaExceeded
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// errorFrom builds the Error of a refusal from its status, headers and body.
func errorFrom(status int, h http.Header, body []byte) *Error {
	e := &Error{Status: status}
	var wire struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &wire) == nil && wire.Error.Code != "" {
		e.Code, e.Message = wire.Error.Code, wire.Error.Message
	} else {
		e.Message = strings.TrimSpace(string(body[:min(len(body), 200)]))
	}
	if s, err := strconv.Atoi(h.Get("Retry-After")); err == nil && s >= 0 {
		e.RetryAfter = time.Duration(s) * time.Second
	}
	return e
}
