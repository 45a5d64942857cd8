package service

import (
	"context"
	"net/http"
	"slices"
	"time"

	"github.com/switchboard-dev/switchboard/subscriptions"
)

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

// presenceJanitorInterval is how often a node looks for presence counts of dead nodes.
const presenceJanitorInterval = 15 * time.Second

// presenceJanitor clears the presence counts of nodes that are gone: its own from an
// earlier process with the same id at start, then any node that holds counts but has been
// missing from the registry for two checks in a row (the registry's own reaping covers
// nodes that announced and died; this covers one that died before it announced).
func (s *Server) presenceJanitor(ctx context.Context) {
	p := s.cfg.Events.Presence()
	if _, err := p.NodeGone(ctx, s.hub.Node()); err != nil && ctx.Err() == nil {
		s.log.Warn("clearing this node's old presence counts failed", "err", err)
	}
	missing := map[string]bool{}
	t := time.NewTicker(presenceJanitorInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		counted, err := p.Nodes(ctx)
		if err != nil {
			continue
		}
		live, err := s.hub.Nodes(ctx)
		if err != nil {
			continue
		}
		stillMissing := map[string]bool{}
		for _, n := range counted {
			if n == s.hub.Node() || slices.ContainsFunc(live, func(l subscriptions.NodeInfo) bool { return l.Node == n }) {
				continue
			}
			if missing[n] {
				if off, err := p.NodeGone(ctx, n); err == nil {
					s.log.Warn("cleared the presence counts of a node missing from the registry", "gone", n, "offline", off)
				}
				continue
			}
			stillMissing[n] = true
		}
		missing = stillMissing
	}
}
