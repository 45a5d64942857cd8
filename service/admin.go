package service

import (
	"net/http"
	"strconv"
)

// handleAdminSubscriptions shows this node's subscriptions: GET /admin/subscriptions.
func (s *Server) handleAdminSubscriptions(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Query().Get("scope") {
	case "", "node":
		writeJSON(w, http.StatusOK, s.hub.Stats())
	case "cluster":
		limit := 1000
		if v := r.URL.Query().Get("limit"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 100000 {
				writeError(w, errBadRequest(codeBadRequest, "limit must be an integer from 1 to 100000"))
				return
			}
			limit = n
		}
		st, err := s.hub.ClusterStats(r.Context(), limit)
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, st)
	default:
		writeError(w, errBadRequest(codeBadRequest, "scope must be node or cluster"))
	}
}

// handleHealthz answers 200 while the process runs.
func (s *Server) handleHealthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// handleReadyz answers 200 while Redis and the shared Pub/Sub connection are healthy and the
// node is not draining, else 503: load balancers route new connections by it.
func (s *Server) handleReadyz(w http.ResponseWriter, _ *http.Request) {
	if s.draining.Load() {
		writeError(w, &apiError{status: http.StatusServiceUnavailable, code: codeUnavailable, message: "node is draining"})
		return
	}
	if err := s.hub.Ready(); err != nil {
		writeError(w, &apiError{status: http.StatusServiceUnavailable, code: codeUnavailable, message: err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready", "node": s.hub.Node()})
}
