package service

import (
	"context"
	"net/http"
)

// presenceCmd asks which members of a room are online ({"type":"presence","room":...});
// members only.
type presenceCmd struct {
	cmdRef
	room string
}

// presenceCommand validates a presence frame.
func (raw *rawFrame) presenceCommand(cr cmdRef, f frameStrings) (command, *frameError) {
	if fe := raw.onlyFields("presence", fieldRoom); fe != nil {
		return nil, fe
	}
	if err := requireID("room", f.room); err != nil {
		return nil, &frameError{code: codeInvalidID, message: err.Error()}
	}
	return presenceCmd{cr, f.room}, nil
}

// presenceFrame answers a presence frame.
type presenceFrame struct {
	Type   string   `json:"type"`
	Ref    string   `json:"ref,omitempty"`
	Room   string   `json:"room"`
	Online []string `json:"online"`
}

// roomPresence answers a presence frame from a member of the room. It spends one of the
// connection's read tokens, as a history frame does.
func (s *Server) roomPresence(ctx context.Context, c *client, cmd presenceCmd) error {
	if !c.allowRead(cmd.ref) {
		return nil
	}
	online, err := s.hub.RoomPresence(ctx, cmd.room, c.user)
	if err != nil {
		return err
	}
	c.send(encodeFrame(presenceFrame{Type: "presence", Ref: cmd.ref, Room: cmd.room, Online: nonNil(online)}))
	return nil
}

// handleGetRoomPresence lists a room's members that are online: GET
// /v1/rooms/{room}/presence.
func (s *Server) handleGetRoomPresence(w http.ResponseWriter, r *http.Request) {
	room, err := pathID(r, "room")
	if err != nil {
		writeError(w, err)
		return
	}
	online, err := s.hub.RoomPresence(r.Context(), room, "")
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Online []string `json:"online"`
	}{nonNil(online)})
}
