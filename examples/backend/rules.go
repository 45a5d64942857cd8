package main

import (
	"slices"
	"strings"
)

// The example's data and its permission rules: who is in which team, who owns which order.
// A real app reads these from its database.

// exampleTeams returns the teams and their members.
func exampleTeams() map[string][]string {
	return map[string][]string{
		"red":  {"alice", "bob"},
		"blue": {"bob", "carol"},
	}
}

// order is what orders.get returns.
type order struct {
	ID     string `json:"id"`
	Owner  string `json:"owner"`
	Item   string `json:"item"`
	Status string `json:"status"`
}

// exampleOrders returns the orders by id.
func exampleOrders() map[string]order {
	return map[string]order{
		"A-1001": {ID: "A-1001", Owner: "alice", Item: "keyboard", Status: "shipped"},
		"A-1002": {ID: "A-1002", Owner: "alice", Item: "monitor", Status: "paid"},
		"B-2001": {ID: "B-2001", Owner: "bob", Item: "chair", Status: "delivered"},
	}
}

// teamsOf returns the teams user belongs to, sorted.
func (b *Backend) teamsOf(user string) []string {
	var out []string
	for team, members := range b.teams {
		if slices.Contains(members, user) {
			out = append(out, team)
		}
	}
	slices.Sort(out)
	return out
}

// mayJoin is the authorize hook's rule for rooms: "team.<team>.<anything>" is open to the
// members of <team>. Everything else that the connect grants did not allow is refused.
func (b *Backend) mayJoin(user, room string) bool {
	rest, ok := strings.CutPrefix(room, "team.")
	if !ok {
		return false
	}
	team, topic, ok := strings.Cut(rest, ".")
	if !ok || team == "" || topic == "" {
		return false
	}
	return slices.Contains(b.teams[team], user)
}

// mayDM is the authorize hook's rule for direct messages: users who share a team may write
// to each other.
func (b *Backend) mayDM(from, to string) bool {
	for _, members := range b.teams {
		if slices.Contains(members, from) && slices.Contains(members, to) {
			return true
		}
	}
	return false
}
