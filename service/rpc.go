package service

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/switchboard-dev/switchboard/hooks"
)

// maxRPCInFlight bounds one connection's rpc calls waiting for the backend; more are
// refused with rate_limited until one returns.
const maxRPCInFlight = 16

var errRPCNotEnabled = &apiError{status: http.StatusNotImplemented, code: codeNotEnabled,
	message: "this server has no RPC backend (--rpc-url)"}

// startRPC hands an rpc frame to the backend's RPC hook on a call goroutine (goRPC), so
// that the connection keeps reading frames and receiving messages while the backend
// thinks; the result (or error) frame follows with the frame's ref. An error refuses the
// frame now. The call ends with the connection (rpcCtx).
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
	s.goRPC(func() {
		defer c.recoverPanic("rpc")
		data, err := s.callRPC(ctx, c, cmd)
		if err != nil {
			c.sendError(cmd.ref, err)
			return
		}
		c.send(encodeFrame(resultFrame{Type: "result", Ref: cmd.ref, Data: data}))
	})
	return nil
}

// callRPC calls the backend for cmd. The call leaves the connection's count of calls in
// flight as soon as the backend has answered, before the client hears of it, so that a
// client sending its next call on a result always finds room.
func (s *Server) callRPC(ctx context.Context, c *client, cmd rpcCmd) (json.RawMessage, error) {
	defer c.rpcs.Add(-1)
	return s.cfg.Hooks.RPC(ctx, hooks.RPCRequest{User: c.user, Method: cmd.method, Data: cmd.data, Node: s.hub.Node()})
}

// rpcIdle is how long a call goroutine waits for another call before it ends.
const rpcIdle = 5 * time.Second

// goRPC runs call on a call goroutine: an idle one if there is one, a new one otherwise. A
// call goes deep into net/http, and a fresh goroutine's small stack is copied as it grows,
// 6-7 % of a call's CPU (docs/benchmarks.md, "Backend hooks"); one that keeps its grown
// stack for the next call does not pay that again. The call goroutines are as many as the
// calls in flight at the busiest moment of the last rpcIdle, each counted in s.wg and
// ended by s.ctx at shutdown. goRPC runs on a read loop, which s.wg counts, so the count
// is above zero when it adds to it.
func (s *Server) goRPC(call func()) {
	select {
	case s.rpcCalls <- call:
		return
	default:
	}
	s.wg.Add(1)
	s.rpcStarted.Add(1)
	go s.rpcWorker(call)
}

// rpcWorker runs call, then the calls handed to it, until none came for rpcIdle or the
// node stops.
func (s *Server) rpcWorker(call func()) {
	defer s.wg.Done()
	idle := time.NewTimer(rpcIdle)
	defer idle.Stop()
	for {
		call()
		idle.Reset(rpcIdle)
		select {
		case call = <-s.rpcCalls:
		case <-idle.C:
			return
		case <-s.ctx.Done():
			return
		}
	}
}

// endRPCs cancels the connection's rpc calls still waiting: it is closing.
func (c *client) endRPCs() {
	if c.rpcCancel != nil {
		c.rpcCancel()
	}
}
