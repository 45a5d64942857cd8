package service

import (
	"context"
	"net/http"
)

// Authorizer decides, for a join or a direct message that the user's token does not
// grant, whether it is allowed anyway: the backend's authorize hook. An error refuses it
// (fail closed) with the refusal classify gives the error.
type Authorizer interface {
	Authorize(ctx context.Context, req AuthorizeRequest) (allow bool, err error)
}

// AuthorizeRequest is one question to an Authorizer: may User do Action (ActionJoin with
// Room, or ActionSend with To)?
type AuthorizeRequest struct {
	Action string `json:"action"`
	User   string `json:"user"`
	Room   string `json:"room,omitempty"`
	To     string `json:"to,omitempty"`
}

// The actions an Authorizer is asked about.
const (
	ActionJoin = "join"
	ActionSend = "send"
)

func errForbidden(msg string) *apiError {
	return &apiError{status: http.StatusForbidden, code: codeForbidden, message: msg}
}

// mayJoin allows a join when the connection's permissions are not checked (dev mode), its
// token's rooms claim matches the room, the user is a member already (a backend added it),
// or the Authorizer allows it; cheapest first. A refusal changes nothing.
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
	return s.authorize(ctx, AuthorizeRequest{Action: ActionJoin, User: c.user, Room: room},
		"your token does not grant this room (its rooms claim), and you are not a member")
}

// mayDM allows a client's direct message when its permissions are not checked, its
// token's dm claim matches the recipient, or the Authorizer allows it. A refusal stores
// nothing.
func (s *Server) mayDM(ctx context.Context, c *client, to string) error {
	if !c.perm.checked || c.perm.grants.DM.Match(to) {
		return nil
	}
	return s.authorize(ctx, AuthorizeRequest{Action: ActionSend, User: c.user, To: to},
		"your token does not grant direct messages to this user (its dm claim)")
}

// authorize asks the Authorizer, if there is one; without one, or when it says no, the
// answer is forbidden with msg.
func (s *Server) authorize(ctx context.Context, req AuthorizeRequest, msg string) error {
	if s.cfg.Authorizer == nil {
		return errForbidden(msg)
	}
	allow, err := s.cfg.Authorizer.Authorize(ctx, req)
	if err != nil {
		return err
	}
	if !allow {
		return errForbidden(msg + "; the backend did not allow it either")
	}
	return nil
}
