package service

import (
	"context"
	"time"
)

// The node's registry of open WebSockets: what drains them, pings them and waits for them.
//
// s.wg counts every goroutine that belongs to a connection: its read loop (from register
// to the end of readLoop) and the writer of its close frame (see client.close), so that
// waitClients, in Serve's shutdown, returns only when none is left.

// register adds c to the node's clients unless the node is draining, and counts its read
// loop in s.wg.
func (s *Server) register(c *client) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining.Load() {
		return false
	}
	s.clients[c] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *Server) unregister(c *client) {
	s.mu.Lock()
	delete(s.clients, c)
	s.mu.Unlock()
}

// eachClient calls f for a snapshot of the clients, outside the registry lock.
func (s *Server) eachClient(f func(*client)) {
	s.mu.Lock()
	list := make([]*client, 0, len(s.clients))
	for c := range s.clients {
		list = append(list, c)
	}
	s.mu.Unlock()
	for _, c := range list {
		f(c)
	}
}

// closeClients closes every connection with d, counted in closed_total under its label.
func (s *Server) closeClients(d disconnect) {
	s.eachClient(func(c *client) { c.close(d) })
}

// waitClients waits until every connection's goroutines have ended, or ctx ends.
func (s *Server) waitClients(ctx context.Context) {
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		s.log.Warn("websockets still open after the drain timeout")
	}
}

// heartbeat pings every WebSocket each PingInterval; browsers answer pings but never send
// them, so this and the read deadline are what find dead peers.
func (s *Server) heartbeat(ctx context.Context) {
	t := time.NewTicker(s.cfg.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.eachClient(func(c *client) { c.conn.Async(c.ping) })
	}
}
