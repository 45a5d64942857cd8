// Package hooks calls the backend's synchronous hooks (docs/protocol.md, "Backend hooks"):
// authorize, connect and rpc. It exists because a serverless backend learns what happened
// from the webhook events but cannot decide anything while it happens; these hooks let it
// allow a join or a DM the token does not grant, accept a user by its session cookie, and
// answer a client's request.
//
// One Client serves all three hooks of a node, so they share what must be shared and
// bounded: a keep-alive transport, a bound on calls in flight (per hook, so a hook that hangs
// uses up only its own slots), one timeout that covers waiting for a slot and the call, a
// limit on answer bodies, and the metrics. Every request is a POST signed exactly like the
// webhook's events (events.Sign), and redirects are never followed.
//
// # Use
//
//	c, err := hooks.New(hooks.Config{AuthorizeURL: a, ConnectURL: cu, RPCURL: r,
//		Secret: secret, Node: node, Logger: log, Registerer: reg})
//	allow, err := c.Authorize(ctx, hooks.AuthorizeRequest{Action: hooks.ActionJoin, User: u, Room: room})
//	ans, err := c.Connect(ctx, hooks.NewConnectRequest(r, clientIP))
//	data, err := c.RPC(ctx, hooks.RPCRequest{User: u, Method: m, Data: d})
//
// # Errors
//
// Errors the service branches on, and what they become at its edge:
//
//   - ErrNotEnabled: the hook's URL is not configured (frame code not_enabled; for
//     authorize, a plain refusal).
//   - ErrUnavailable (errors.Is): no usable answer — a timeout, an unreachable backend, no
//     free slot within the timeout, a status the hook does not define, a body that is not
//     the JSON the hook expects or is over the limit. Fail closed: unavailable, or 503 for
//     connect.
//   - *RefusedError (errors.As): the connect hook answered 401 or 403; the upgrade is
//     refused with that status.
//   - *RPCError (errors.As): the rpc hook answered a non-2xx status (rpc_failed with it).
//
// Authorize reports a refusal (200 {"allow":false} or a 4xx) as (false, nil), not as an
// error.
//
// # Authorize cache
//
// An authorize answer with "cache_s":N (capped at MaxCacheSeconds) is reused on this node
// for N seconds for the same request (action, user, room or target user), allow and deny
// alike. The cache holds at most Config.MaxCacheEntries answers; when it is full, expired
// answers go first, then the one stored longest ago. Identical questions asked while one is in flight wait for its answer instead
// of calling the backend again.
package hooks
