package hooks

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
)

// RPCRequest is the rpc hook's body: a client's rpc frame, with who sent it.
type RPCRequest struct {
	User   string          `json:"user"`
	Method string          `json:"method"`
	Data   json.RawMessage `json:"data"` // nil is sent as null
	// Node is the node the client is connected to. Empty means Config.Node.
	Node string `json:"node"`
}

// RPCError is a non-2xx answer of the rpc hook: the client's call fails with rpc_failed
// and Status.
type RPCError struct {
	Status int
}

func (e *RPCError) Error() string {
	return fmt.Sprintf("rpc hook answered %d %s", e.Status, http.StatusText(e.Status))
}

// RPC calls the rpc hook and returns the data of its 2xx answer (null for an empty body).
// A non-2xx answer is an *RPCError; no answer, or one that is not JSON, wraps
// ErrUnavailable; ErrNotEnabled without an RPCURL. req.Data must be valid JSON (or nil).
func (c *Client) RPC(ctx context.Context, req RPCRequest) (json.RawMessage, error) {
	e := c.hooks[2]
	if e.url == "" {
		return nil, ErrNotEnabled
	}
	if req.Node == "" {
		req.Node = c.cfg.Node
	}
	payload, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("rpc hook: encoding the request: %w", err)
	}
	var data json.RawMessage
	err = c.call(ctx, e, payload, func(status int, body []byte) (outcome, error) {
		if status < 200 || status > 299 {
			return statusOutcome(status), &RPCError{Status: status}
		}
		body = bytes.TrimSpace(body)
		if len(body) == 0 {
			data = json.RawMessage("null")
			return outcomeOK, nil
		}
		if !json.Valid(body) {
			return badAnswer(e, "the body is not JSON")
		}
		data = body
		return outcomeOK, nil
	})
	if err != nil {
		return nil, err
	}
	return data, nil
}
