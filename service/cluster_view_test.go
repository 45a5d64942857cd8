package service_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/internal/testutil"
	"github.com/switchboard-dev/switchboard/internal/wsclient"
	"github.com/switchboard-dev/switchboard/subscriptions"
)

func testDeleteConnectionsClosesEveryDeviceOnEveryNodeWith4001(t *testing.T, be backend) {
	a := startNode(t, be, "a")
	b := startNode(t, be, "b")
	phone, _ := connect(t, a, "bob")
	laptop, _ := connect(t, a, "bob")
	tablet, _ := connect(t, b, "bob")
	alice, _ := connect(t, b, "alice")

	r := do(t, "DELETE", b.base+"/v1/users/bob/connections", "", nil)
	if r.status != http.StatusOK || r.json(t)["disconnected"] != float64(3) {
		t.Fatalf("DELETE connections: %d %s, want 3 disconnected", r.status, r.body)
	}
	for name, c := range map[string]*wsclient.Conn{"phone": phone, "laptop": laptop, "tablet": tablet} {
		select {
		case <-c.Done():
		case <-time.After(5 * time.Second):
			t.Fatalf("%s still open", name)
		}
		if code, _ := c.CloseCode(); code != 4001 {
			t.Fatalf("%s closed with %d, want 4001", name, code)
		}
	}
	// Others stay; a user with no connection is a no-op.
	id := sendDM(t, a, "alice", `1`)
	if m := next(t, alice, "message"); m.ID != id {
		t.Fatalf("alice got %s", m.Raw)
	}
	if r := do(t, "DELETE", a.base+"/v1/users/nobody/connections", "", nil); r.json(t)["disconnected"] != float64(0) {
		t.Fatalf("DELETE for a user with no connection: %s", r.body)
	}
	if r := do(t, "DELETE", a.base+"/v1/users/bad%20id/connections", "", nil); r.status != http.StatusBadRequest {
		t.Fatalf("bad id: %d", r.status)
	}
}

func testClusterViewListsLiveNodesAndSubscriberCounts(t *testing.T, be backend) {
	fast := func(o *nodeOptions) { o.subscriptions.RegistryInterval = 100 * time.Millisecond }
	a := startNode(t, be, "a", fast)
	b := startNode(t, be, "b", fast)
	connect(t, a, "bob")
	connect(t, b, "bob")
	connect(t, b, "bob")
	connect(t, b, "carol")

	var view subscriptions.ClusterStats
	testutil.WaitFor(t, 5*time.Second, func() bool {
		r := do(t, "GET", a.base+"/admin/subscriptions?scope=cluster", "", nil)
		if r.status != http.StatusOK || json.Unmarshal(r.body, &view) != nil {
			t.Fatalf("cluster view: %d %s", r.status, r.body)
		}
		return len(view.Nodes) == 2 && view.Connections == 4
	}, "both nodes announced with their connections")
	if view.Nodes[0].Node != "a" || view.Nodes[1].Node != "b" || view.Users != 3 {
		t.Fatalf("nodes %+v users %d", view.Nodes, view.Users)
	}
	want := []subscriptions.ClusterChannel{
		{User: "bob", Channel: subscriptions.ChannelName(be.prefix, "bob"), Subscribers: 2},
		{User: "carol", Channel: subscriptions.ChannelName(be.prefix, "carol"), Subscribers: 1},
	}
	if len(view.Channels) != 2 || view.Channels[0] != want[0] || view.Channels[1] != want[1] {
		t.Fatalf("channels %+v, want %+v (sorted by user)", view.Channels, want)
	}

	// A node that drains leaves the registry at once.
	b.Stop()
	testutil.WaitFor(t, 5*time.Second, func() bool {
		r := do(t, "GET", a.base+"/admin/subscriptions?scope=cluster", "", nil)
		_ = json.Unmarshal(r.body, &view)
		return len(view.Nodes) == 1 && len(view.Channels) == 1
	}, "the stopped node and its channels to leave the view")
	if r := do(t, "GET", a.base+"/admin/subscriptions?scope=planet", "", nil); r.status != http.StatusBadRequest {
		t.Fatalf("bad scope: %d", r.status)
	}
}
