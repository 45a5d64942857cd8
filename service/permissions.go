package service

import (
	"context"
	"net/http"

	"github.com/switchboard-dev/switchboard/hooks"
)

func errForbidden(msg string) *apiError {
	return &apiError{status: http.StatusForbidden, code: codeForbidden, message: msg}
}

// mayJoin allows a join when the connection's permissions are not checked (dev mode), its
// token's rooms claim matches the room, the user is a member already (a backend added it),
// or the authorize hook allows it; cheapest first. A refusal changes nothing.
func (s *Server) mayJoin(ctx context.Context, c *client, room string) error {
	if !c.perm.checked || c.perm.grants.Rooms.Match(room) {
		return nil
	}
	member, err := s.hub.IsMember(ctx, room, c.user)
	if err != nil {
		return err
	}
	if member {
		return nil
	}
	return s.authorize(ctx, hooks.AuthorizeRequest{Action: hooks.ActionJoin, User: c.user, Room: room},
		"your token does not grant this room (its rooms claim), and you are not a member")
}

// mayDM allows a client's direct message when its permissions are not checked, its
// token's dm claim matches the recipient, or the authorize hook allows it. A refusal stores
// nothing.
func (s *Server) mayDM(ctx context.Context, c *client, to string) error {
	if !c.perm.checked || c.perm.grants.DM.Match(to) {
		return nil
	}
	return s.authorize(ctx, hooks.AuthorizeRequest{Action: hooks.ActionSend, User: c.user, To: to},
		"your token does not grant direct messages to this user (its dm claim)")
}

// authorize asks the authorize hook, if there is one; without one, or when it says no,
// the answer is forbidden with msg. A hook that does not answer refuses too (fail closed),
// with unavailable.
func (s *Server) authorize(ctx context.Context, req hooks.AuthorizeRequest, msg string) error {
	if !s.hookOn(hooks.HookAuthorize) {
		return errForbidden(msg)
	}
	allow, err := s.cfg.Hooks.Authorize(ctx, req)
	if err != nil {
		return err
	}
	if !allow {
		return errForbidden(msg + "; the backend did not allow it either")
	}
	return nil
}

// hookOn reports whether the backend's hook h is configured.
func (s *Server) hookOn(h hooks.Hook) bool {
	return s.cfg.Hooks != nil && s.cfg.Hooks.Enabled(h)
}

// devMode reports whether the node authenticates nobody: no token keys and no connect
// hook. Then /ws takes ?user=, and every join and direct message is allowed.
func (s *Server) devMode() bool {
	return s.cfg.Tokens == nil && !s.hookOn(hooks.HookConnect)
}
