package main

import (
	"encoding/json"
	"net/http"
	"strings"
)

// The three synchronous hooks (docs/hooks.md). Every request reaching these handlers has
// passed the signature check of verified; what Switchboard does with each answer is
// written next to it.

// authorizeCacheSeconds lets every node reuse an authorize answer for a minute: a team
// change takes up to that long to be seen, and the backend is asked far less often.
const authorizeCacheSeconds = 60

// connectRequest is what Switchboard shows of a /ws request that came without a token.
type connectRequest struct {
	Headers    map[string]string `json:"headers"` // Cookie, Authorization, User-Agent
	Query      map[string]string `json:"query"`
	RemoteAddr string            `json:"remote_addr"`
}

// header returns the named header, whatever the case of its name.
func (c connectRequest) header(name string) string {
	for k, v := range c.Headers {
		if strings.EqualFold(k, name) {
			return v
		}
	}
	return ""
}

// connectAnswer opens the connection as User with these grants (patterns, as in a token's
// claims) until ExpiresAt (unix seconds), when Switchboard closes it with 4003.
type connectAnswer struct {
	User      string   `json:"user"`
	Rooms     []string `json:"rooms"`
	DM        []string `json:"dm"`
	ExpiresAt int64    `json:"expires_at"`
}

// connect decides who a token-less /ws request is, from its session cookie. 401 refuses the
// upgrade with 401; a 5xx or no answer would refuse it with 503.
func (b *Backend) connect(w http.ResponseWriter, r *http.Request, body []byte) {
	var req connectRequest
	if err := json.Unmarshal(body, &req); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "the body is not a connect request")
		return
	}
	user, exp, err := b.sessionFromCookieHeader(req.header("Cookie"))
	if err != nil {
		b.log.Info("connect refused", "remote_addr", req.RemoteAddr, "err", err)
		writeError(w, http.StatusUnauthorized, "no_session", "sign in first")
		return
	}
	b.log.Info("connect", "user", user, "remote_addr", req.RemoteAddr)
	writeJSON(w, http.StatusOK, connectAnswer{
		User: user,
		// What never changes while the user is connected fits here; what may change (team
		// membership) is left to the authorize hook, whose answers expire.
		Rooms:     []string{"public.*"}, // public.lobby, public.random, ...
		DM:        []string{"support"},  // everyone may write to the support user
		ExpiresAt: exp.Unix(),
	})
}

// authorizeRequest asks whether User may join Room (action "join") or write to To
// ("send"). Switchboard asks only when the connect grants (or the token) do not allow it.
type authorizeRequest struct {
	Action string `json:"action"`
	User   string `json:"user"`
	Room   string `json:"room"`
	To     string `json:"to"`
}

type authorizeAnswer struct {
	Allow  bool `json:"allow"`
	CacheS int  `json:"cache_s"`
}

// authorize applies the team rules. {"allow":false} refuses with forbidden, as a 4xx does;
// a 5xx or no answer in time refuses with unavailable.
func (b *Backend) authorize(w http.ResponseWriter, r *http.Request, body []byte) {
	var req authorizeRequest
	if err := json.Unmarshal(body, &req); err != nil || !validID(req.User) {
		writeError(w, http.StatusBadRequest, "bad_request", "the body is not an authorize request")
		return
	}
	var allow bool
	switch {
	case req.Action == "join" && validID(req.Room):
		allow = b.mayJoin(req.User, req.Room)
	case req.Action == "send" && validID(req.To):
		allow = b.mayDM(req.User, req.To)
	default:
		writeError(w, http.StatusBadRequest, "bad_request", "unknown action or target")
		return
	}
	b.log.Info("authorize", "action", req.Action, "user", req.User, "room", req.Room, "to", req.To, "allow", allow)
	// A refusal is cached as well: a user who keeps retrying costs the backend nothing.
	writeJSON(w, http.StatusOK, authorizeAnswer{Allow: allow, CacheS: authorizeCacheSeconds})
}

// rpcRequest is a client's rpc frame, with who sent it and the node it is connected to.
type rpcRequest struct {
	User   string          `json:"user"`
	Method string          `json:"method"`
	Data   json.RawMessage `json:"data"`
	Node   string          `json:"node"`
}

// rpc answers a client's call. A 2xx body reaches the client as the result frame's data; any
// other status reaches it as rpc_failed with that status (the body only helps whoever reads
// the backend's answers while debugging).
func (b *Backend) rpc(w http.ResponseWriter, r *http.Request, body []byte) {
	var req rpcRequest
	if err := json.Unmarshal(body, &req); err != nil || !validID(req.User) {
		writeError(w, http.StatusBadRequest, "bad_request", "the body is not an rpc request")
		return
	}
	b.log.Info("rpc", "user", req.User, "method", req.Method, "node", req.Node)
	switch req.Method {
	case "echo":
		if len(req.Data) == 0 {
			req.Data = json.RawMessage("null")
		}
		writeJSON(w, http.StatusOK, req.Data)
	case "whoami":
		writeJSON(w, http.StatusOK, map[string]any{"user": req.User, "node": req.Node, "teams": nonNil(b.teamsOf(req.User))})
	case "orders.get":
		b.getOrder(w, req)
	default:
		writeError(w, http.StatusNotFound, "unknown_method", "no method "+req.Method)
	}
}

// getOrder answers orders.get {"id":"A-1001"} with the order, if the caller owns it. Someone
// else's order is "not found" too, so that ids cannot be probed.
func (b *Backend) getOrder(w http.ResponseWriter, req rpcRequest) {
	var args struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(req.Data, &args); err != nil || args.ID == "" {
		writeError(w, http.StatusBadRequest, "bad_request", `pass {"id":"<order id>"}`)
		return
	}
	o, ok := b.orders[args.ID]
	if !ok || o.Owner != req.User {
		writeError(w, http.StatusNotFound, "not_found", "no order "+args.ID)
		return
	}
	writeJSON(w, http.StatusOK, o)
}

// nonNil makes an empty list encode as [] rather than null.
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
