package service

import "net/http"

// handleGetPresence answers whether a user is connected anywhere: GET
// /v1/users/{user}/presence. Online comes from Redis's subscriber count of the user's
// channel (a node subscribes it exactly while it holds one of the user's connections);
// connections from the per-user counts the nodes keep.
func (s *Server) handleGetPresence(w http.ResponseWriter, r *http.Request) {
	user, err := pathID(r, "user")
	if err != nil {
		writeError(w, err)
		return
	}
	subscribers, err := s.hub.Subscribers(r.Context(), user)
	if err != nil {
		writeError(w, err)
		return
	}
	connections := 0
	if subscribers > 0 {
		if s.cfg.Events != nil {
			if connections, err = s.cfg.Events.Presence().Online(r.Context(), user); err != nil {
				writeError(w, err)
				return
			}
		}
		// Counts lag a node that died until the registry notices; subscriptions do not.
		connections = max(connections, int(subscribers))
	}
	writeJSON(w, http.StatusOK, struct {
		Online      bool `json:"online"`
		Connections int  `json:"connections"`
	}{subscribers > 0, connections})
}
