package service

import (
	"errors"
	"strings"

	"github.com/switchboard-dev/switchboard/subscriptions"
)

// maxRoomSince bounds how many room positions one resume may give: a user is in at most
// --max-rooms-per-user rooms, and only its big rooms need one.
const maxRoomSince = 1000

// parseRoomSince reads a resume's per-room positions, room_since=<room>:<id>,<room>:<id>
// (docs/protocol.md, "Big rooms"). A room id holds neither ':' nor ',', so the list
// splits without escapes.
func parseRoomSince(q string) (map[string]subscriptions.StreamID, error) {
	if q == "" {
		return nil, nil
	}
	parts := strings.Split(q, ",")
	if len(parts) > maxRoomSince {
		return nil, errors.New("room_since names more rooms than a user may be in")
	}
	out := make(map[string]subscriptions.StreamID, len(parts))
	for _, p := range parts {
		room, id, ok := strings.Cut(p, ":")
		if !ok || !subscriptions.ValidID(room) {
			return nil, errors.New("room_since must be <room>:<id>,… with valid room ids")
		}
		pos, err := subscriptions.ParseStreamID(id)
		if err != nil {
			return nil, errors.New("room_since must be <room>:<id>,… with message ids <ms>-<seq>")
		}
		if _, dup := out[room]; dup {
			return nil, errors.New("room_since names a room twice")
		}
		out[room] = pos
	}
	return out, nil
}
