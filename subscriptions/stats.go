package subscriptions

import "sort"

// ChannelStats describes one user channel this node is subscribed to.
type ChannelStats struct {
	User        string `json:"user"`
	Channel     string `json:"channel"`
	Connections int    `json:"connections"`
}

// Stats is a snapshot of the node's subscriptions.
type Stats struct {
	Node        string         `json:"node"`
	Channels    []ChannelStats `json:"channels"`
	Connections int            `json:"connections"`
	Users       int            `json:"users"`
	// PubSubReconnects counts Pub/Sub connections built after the first one.
	PubSubReconnects int64 `json:"pubsub_reconnects"`
	// CaughtUp counts messages delivered from streams after a reconnect.
	CaughtUp int64 `json:"caught_up"`
	// Replayed counts messages replayed to connections that resumed with since.
	Replayed int64 `json:"replayed"`
}

// LocalConnections returns how many of user's connections this node holds.
func (h *Hub) LocalConnections(user string) int {
	return h.localConnections(user)
}

// Stats returns the node's current subscriptions, sorted by user.
func (h *Hub) Stats() Stats {
	st := Stats{Node: h.cfg.Node}
	st.Channels, st.Connections = h.channelStats()
	st.Users = len(st.Channels)
	st.PubSubReconnects, st.CaughtUp, st.Replayed = h.reconnects.Load(), h.caughtUp.Load(), h.replayed.Load()
	sort.Slice(st.Channels, func(i, j int) bool { return st.Channels[i].User < st.Channels[j].User })
	return st
}
