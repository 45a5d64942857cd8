package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/switchboard-dev/switchboard/events"
	"github.com/switchboard-dev/switchboard/hooks"
	"github.com/switchboard-dev/switchboard/subscriptions"
)

// Error codes, shared by HTTP error bodies and WebSocket error frames.
const (
	codeBadRequest   = "bad_request"
	codeBadJSON      = "bad_json"
	codeInvalidID    = "invalid_id"
	codeUnauthorized = "unauthorized"
	codeForbidden    = "forbidden"
	codeNotFound     = "not_found"
	codeNotAllowed   = "method_not_allowed"
	codeTooLarge     = "too_large"
	codeUnsupported  = "unsupported_media_type"
	codeUnavailable  = "unavailable"
	codeRateLimited  = "rate_limited"
	codeQuota        = "quota_exceeded"
	codeNotMember    = "not_member"
	codeUnknownType  = "unknown_type"
	codeQueueFull    = "queue_full"
	codeInternal     = "internal"
	codeNotEnabled   = "not_enabled"
	codeRPCFailed    = "rpc_failed"
)

// apiError is a refusal with its HTTP status and code; handlers return it and one place
// writes it.
type apiError struct {
	status  int
	code    string
	message string
	// retryAfter, when set, is sent as Retry-After: when the refused request may succeed.
	retryAfter time.Duration
	// backendStatus is the backend's HTTP status of a failed rpc (rpc_failed), sent in the
	// error frame's "status".
	backendStatus int
}

func (e *apiError) Error() string { return e.message }

func errBadRequest(code, msg string) *apiError {
	return &apiError{status: http.StatusBadRequest, code: code, message: msg}
}

// classify maps any error to the refusal the client sees. Errors from the domain core are
// mapped here and nowhere else.
func classify(err error) *apiError {
	var ae *apiError
	var rl *rateLimitedError
	var refused *hooks.RefusedError
	var rpcErr *hooks.RPCError
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.As(err, &refused):
		if refused.Status == http.StatusForbidden {
			return &apiError{status: http.StatusForbidden, code: codeForbidden, message: "the backend refused the connection"}
		}
		return errUnauthorized("the backend did not recognize you (no token, and its connect hook refused)")
	case errors.As(err, &rpcErr):
		return &apiError{status: http.StatusBadGateway, code: codeRPCFailed, backendStatus: rpcErr.Status,
			message: fmt.Sprintf("the backend answered the call with %d %s", rpcErr.Status, http.StatusText(rpcErr.Status))}
	case errors.Is(err, hooks.ErrNotEnabled):
		return &apiError{status: http.StatusNotImplemented, code: codeNotEnabled, message: "this server has no backend hook for that"}
	case errors.Is(err, hooks.ErrUnavailable):
		return &apiError{status: http.StatusServiceUnavailable, code: codeUnavailable,
			message: "the backend's hook gave no usable answer in time; nothing was done"}
	case errors.As(err, &rl):
		return &apiError{status: http.StatusTooManyRequests, code: codeRateLimited, message: rl.Error(), retryAfter: rl.retryAfter}
	case errors.Is(err, subscriptions.ErrQuotaExceeded):
		// 429 rather than 409: docs/protocol.md's list of statuses has it, and clients already
		// read it as "over a limit"; the code tells a quota (no Retry-After) from a rate.
		return &apiError{status: http.StatusTooManyRequests, code: codeQuota, message: err.Error()}
	case errors.Is(err, subscriptions.ErrInvalidID):
		return errBadRequest(codeInvalidID, "ids must match ^[A-Za-z0-9._@+-]{1,128}$")
	case errors.Is(err, subscriptions.ErrNotMember):
		return &apiError{status: http.StatusForbidden, code: codeNotMember, message: "join the room before posting to it"}
	case errors.Is(err, subscriptions.ErrBadStreamID):
		return errBadRequest(codeBadRequest, "message ids are of the form <ms>-<seq>")
	case errors.Is(err, events.ErrInvalidEvent):
		return errBadRequest(codeBadRequest, err.Error())
	case errors.Is(err, events.ErrQueueFull):
		return &apiError{status: http.StatusServiceUnavailable, code: codeQueueFull, message: "the backend event queue has no room for this event (the backend is behind); it was not queued, retry later"}
	case errors.Is(err, subscriptions.ErrIdempotencyConflict), errors.Is(err, subscriptions.ErrIdempotencyPending):
		return idempotencyRefusal(err)
	case errors.Is(err, subscriptions.ErrUnavailable), errors.Is(err, subscriptions.ErrClosed), errors.Is(err, events.ErrUnavailable):
		return &apiError{status: http.StatusServiceUnavailable, code: codeUnavailable, message: "redis is unavailable; nothing was accepted"}
	default:
		return &apiError{status: http.StatusInternalServerError, code: codeInternal, message: "internal error"}
	}
}

// Close codes the server sends (closeProtocolError, 1002, is the frame guard's).
const (
	closePolicy        = 1008 // sustained abuse: do not reconnect by yourself
	closeInternalError = 1011
	closeRestarting    = 1012 // the node drains: reconnect elsewhere and resume
	closeTryAgainLater = 1013 // slow consumer, or Redis unavailable: reconnect and resume
	closeKicked        = 4001 // DELETE /v1/users/{user}/connections: do not reconnect by yourself
)

// disconnect is how and why the server closes a WebSocket: the close frame's code and
// reason, and the label switchboard_connections_closed_total counts it under. It has the
// fields of the frame guard's frameViolation, which converts to it.
type disconnect struct {
	code   uint16
	reason string
	label  string
}

// The closes that do not come from an error.
var (
	disconnectDraining    = disconnect{closeRestarting, "server restarting; reconnect and resume", "draining"}
	disconnectServerError = disconnect{closeInternalError, "server error", "server_error"}
	disconnectPanic       = disconnect{closeInternalError, "internal error", "panic"}
	disconnectRateLimited = disconnect{closePolicy, "rate limit exceeded", "rate_limited"}
	disconnectSlow        = disconnect{closeTryAgainLater, "too slow; reconnect and resume", "slow_consumer"}
)

// disconnectFor maps the error that ends a connection — a hub's Drop reason, a failed
// subscribe — to its close, as classify maps errors to refusals. A node that is closing
// (the hub closed, or the server's context cancelled under a Redis call) sends its clients
// elsewhere with 1012; Redis trouble and falling behind are 1013, reconnect and resume.
func disconnectFor(err error) disconnect {
	switch {
	case errors.Is(err, subscriptions.ErrKicked):
		return disconnect{closeKicked, "disconnected by the service", "kicked"}
	case errors.Is(err, subscriptions.ErrClosed), errors.Is(err, context.Canceled):
		// Before ErrUnavailable: a call cut short by the shutdown wraps both.
		return disconnectDraining
	case errors.Is(err, subscriptions.ErrLagged):
		return disconnect{closeTryAgainLater, "fell behind the history; reconnect and resume", "lagged"}
	case errors.Is(err, subscriptions.ErrUnavailable), errors.Is(err, events.ErrUnavailable),
		errors.Is(err, context.DeadlineExceeded):
		return disconnect{closeTryAgainLater, "redis unavailable; reconnect and resume", "redis_unavailable"}
	case errors.Is(err, subscriptions.ErrSlowConsumer):
		return disconnectSlow
	default:
		return disconnectServerError
	}
}

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// writeError answers a refusal as {"error":{"code":...,"message":...}}.
func writeError(w http.ResponseWriter, err error) {
	ae := classify(err)
	if ae.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="switchboard"`)
	}
	if ae.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.FormatInt(int64((ae.retryAfter+time.Second-1)/time.Second), 10))
	}
	writeJSON(w, ae.status, errorBody{Error: errorDetail{Code: ae.code, Message: ae.message}})
}

// writeJSON answers v as JSON with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":{"code":"internal","message":"encoding failed"}}`)
	}
	writeJSONBytes(w, status, append(b, '\n'))
}

// Header values set on every JSON answer, shared rather than allocated per request.
var (
	jsonContentType = []string{"application/json"}
	noSniff         = []string{"nosniff"}
)

// writeJSONBytes answers an already encoded JSON body.
func writeJSONBytes(w http.ResponseWriter, status int, b []byte) {
	h := w.Header()
	h["Content-Type"] = jsonContentType
	h["X-Content-Type-Options"] = noSniff
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
