package service_test

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/switchboard-dev/switchboard/internal/redistest"
	"github.com/switchboard-dev/switchboard/internal/wsclient"
)

// TestTwoNodesOnRedisCluster runs two nodes on a real 3-master Redis Cluster with sharded
// Pub/Sub and counts every message over real WebSockets: DMs across nodes to users on every
// shard, a room whose members live on different shards, resume, and a Pub/Sub drop on one
// shard.
func TestTwoNodesOnRedisCluster(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	be := onCluster(cl, 3, "t")
	a := startNode(t, be, "a")
	b := startNode(t, be, "b")
	const users = 24 // their buckets spread over all three masters
	conns := map[string]*wsclient.Conn{}
	for i := range users {
		u := "u" + strconv.Itoa(i)
		conns[u], _ = connect(t, []*node{a, b}[i%2], u)
		putMember(t, a, "all", u)
	}
	sent := map[string][]string{}
	for round := range 10 {
		if round == 5 {
			cl.Node(2).KillPubSubClients(t)
		}
		for i := range users {
			u := "u" + strconv.Itoa(i)
			// Posted to the node the user is not on.
			sent[u] = append(sent[u], sendDM(t, []*node{b, a}[i%2], u, fmt.Sprintf(`"dm %d"`, round)))
		}
		r := do(t, "POST", a.base+"/v1/rooms/all/messages", "application/json", strings.NewReader(fmt.Sprintf(`"room %d"`, round)))
		if r.status != http.StatusAccepted || r.json(t)["recipients"] != float64(users) {
			t.Fatalf("room post: %d %s", r.status, r.body)
		}
	}
	lastSeen := map[string]string{}
	for i := range users {
		u := "u" + strconv.Itoa(i)
		var dms, room []wsclient.Frame
		for range 20 {
			m := next(t, conns[u], "message")
			lastSeen[u] = m.ID
			if m.Room == "all" {
				room = append(room, m)
			} else {
				dms = append(dms, m)
			}
		}
		checkExactly(t, dms, sent[u])
		for r, m := range room {
			if string(m.Data) != fmt.Sprintf(`"room %d"`, r) {
				t.Fatalf("%s: room message %d is %s", u, r, m.Raw)
			}
		}
	}
	// Resume on the other node after being away.
	u0 := conns["u0"]
	last := lastSeen["u0"]
	u0.Close()
	missed := []string{sendDM(t, a, "u0", `"while away 1"`), sendDM(t, b, "u0", `"while away 2"`)}
	again, w := connect(t, b, "u0", "since", last)
	if w.Recovered == nil || !*w.Recovered {
		t.Fatalf("welcome %s", w.Raw)
	}
	checkExactly(t, []wsclient.Frame{next(t, again, "message"), next(t, again, "message")}, missed)
}
