package service

import (
	"context"
	"net/http"

	"github.com/switchboard-dev/switchboard/hooks"
)

// maxRPCInFlight bounds one connection's rpc calls waiting for the backend; more are
// refused with rate_limited until one returns.
const maxRPCInFlight = 16

var errRPCNotEnabled = &apiError{status: http.StatusNotImplemented, code: codeNotEnabled,
	message: "this server has no RPC backend (--rpc-url)"}

// startRPC hands an rpc frame to the backend's RPC hook on a goroutine of its own, so that
// the connection keeps reading frames and receiving messages while the backend thinks; the
// result (or error) frame follows with the frame's ref. An error refuses the frame now.
// The goroutine is counted in s.wg (the read loop that starts it is counted too, so the
// count is above zero) and its call ends with the connection (rpcCtx).
func (s *Server) startRPC(c *client, cmd rpcCmd) error {
	if !s.hookOn(hooks.HookRPC) {
		return errRPCNotEnabled
	}
	if c.rpcs.Add(1) > maxRPCInFlight {
		c.rpcs.Add(-1)
		return &apiError{status: http.StatusTooManyRequests, code: codeRateLimited,
			message: "at most 16 rpc calls may wait for the backend per connection; wait for a result"}
	}
	if c.rpcCtx == nil {
		c.rpcCtx, c.rpcCancel = context.WithCancel(s.ctx)
	}
	ctx := c.rpcCtx
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer c.rpcs.Add(-1)
		defer c.recoverPanic("rpc")
		data, err := s.cfg.Hooks.RPC(ctx, hooks.RPCRequest{User: c.user, Method: cmd.method, Data: cmd.data, Node: s.hub.Node()})
		if err != nil {
			c.sendError(cmd.ref, err)
			return
		}
		c.send(encodeFrame(resultFrame{Type: "result", Ref: cmd.ref, Data: data}))
	}()
	return nil
}

// endRPCs cancels the connection's rpc calls still waiting: it is closing.
func (c *client) endRPCs() {
	if c.rpcCancel != nil {
		c.rpcCancel()
	}
}
