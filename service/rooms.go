package service

import (
	"context"
	"errors"
	"net/http"

	"github.com/switchboard-dev/switchboard/events"
	"github.com/switchboard-dev/switchboard/subscriptions"
)

// handlePutMember adds a user to a room: PUT /v1/rooms/{room}/members/{user}. Idempotent.
func (s *Server) handlePutMember(w http.ResponseWriter, r *http.Request) {
	s.changeMember(w, r, true)
}

// handleDeleteMember removes a user from a room: DELETE /v1/rooms/{room}/members/{user}.
func (s *Server) handleDeleteMember(w http.ResponseWriter, r *http.Request) {
	s.changeMember(w, r, false)
}

func (s *Server) changeMember(w http.ResponseWriter, r *http.Request, join bool) {
	room, err := pathID(r, "room")
	if err != nil {
		writeError(w, err)
		return
	}
	user, err := pathID(r, "user")
	if err != nil {
		writeError(w, err)
		return
	}
	if err := s.changeMembership(r.Context(), room, user, join, events.ByAPI); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// changeMembership joins or leaves a room and, when that changed anything, queues the
// room.joined or room.left event. If queuing fails the change stands and the caller gets an
// error; repeating the call changes nothing and queues nothing, so that event is lost —
// both steps need Redis, which has just failed.
func (s *Server) changeMembership(ctx context.Context, room, user string, join bool, by string) error {
	var changed bool
	var err error
	typ := events.RoomJoined
	if join {
		changed, err = s.hub.Join(ctx, room, user)
	} else {
		changed, err = s.hub.Leave(ctx, room, user)
		typ = events.RoomLeft
	}
	s.countLimited(err) // a quota's refusal
	if err != nil || !changed || s.cfg.Events == nil {
		return err
	}
	return s.cfg.Events.Emit(ctx, events.Event{Type: typ, User: user, Room: room, By: by})
}

// handleGetMembers lists a room's members: GET /v1/rooms/{room}/members.
func (s *Server) handleGetMembers(w http.ResponseWriter, r *http.Request) {
	room, err := pathID(r, "room")
	if err != nil {
		writeError(w, err)
		return
	}
	members, err := s.hub.Members(r.Context(), room)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Members []string `json:"members"`
	}{nonNil(members)})
}

// handleGetUserRooms lists a user's rooms: GET /v1/users/{user}/rooms.
func (s *Server) handleGetUserRooms(w http.ResponseWriter, r *http.Request) {
	user, err := pathID(r, "user")
	if err != nil {
		writeError(w, err)
		return
	}
	rooms, err := s.hub.Rooms(r.Context(), user)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Rooms []string `json:"rooms"`
	}{nonNil(rooms)})
}

// handlePostRoomMessage fans a message out to a room: POST /v1/rooms/{room}/messages.
func (s *Server) handlePostRoomMessage(w http.ResponseWriter, r *http.Request) {
	room, env, err := s.readMessage(w, r, "room")
	if err != nil {
		writeError(w, err)
		return
	}
	ephemeral, err := ephemeralQuery(r)
	if err != nil {
		writeError(w, err)
		return
	}
	key, err := idempotencyKey(r)
	if err == nil && key != "" && ephemeral {
		err = errIdempotentEphemeral
	}
	if err != nil {
		writeError(w, err)
		return
	}
	if key != "" {
		s.postRoomIdempotent(w, r, room, env, key)
		return
	}
	s.postRoom(w, r, room, env, ephemeral)
}

// postRoom fans env out to room and answers.
func (s *Server) postRoom(w http.ResponseWriter, r *http.Request, room string, env subscriptions.Envelope, ephemeral bool) {
	res, err := s.hub.PublishRoomMessage(r.Context(), room, env, subscriptions.RoomSend{Ephemeral: ephemeral})
	if err != nil && !errors.Is(err, subscriptions.ErrNotReplicated) {
		writeError(w, err)
		return
	}
	if !ephemeral {
		s.metrics.messagesIn.WithLabelValues("http", "room").Inc()
	}
	writeJSON(w, http.StatusAccepted, struct {
		Recipients int    `json:"recipients"`
		HistoryID  string `json:"history_id,omitempty"`
		Ephemeral  bool   `json:"ephemeral,omitempty"`
		Replicated *bool  `json:"replicated,omitempty"` // false only: see sendAnswer
	}{res.Recipients, historyID(res.HistoryID), ephemeral, replicated(err)})
}

// historyID is a room message's id in the room's history, "" when it has none.
func historyID(id subscriptions.StreamID) string {
	if id.IsZero() {
		return ""
	}
	return id.String()
}

// nonNil makes an empty list encode as [] rather than null.
func nonNil(v []string) []string {
	if v == nil {
		return []string{}
	}
	return v
}
