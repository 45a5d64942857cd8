package service_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"testing"

	"github.com/switchboard-dev/switchboard/internal/wsclient"
)

// withQuotas sets the room quotas of a node.
func withQuotas(roomsPerUser, membersPerRoom int) func(*nodeOptions) {
	return func(o *nodeOptions) {
		o.subscriptions.MaxRoomsPerUser, o.subscriptions.MaxRoomMembers = roomsPerUser, membersPerRoom
	}
}

// refusedFrame sends frame and expects an error with code.
func refusedFrame(t *testing.T, c *wsclient.Conn, frame, code string) {
	t.Helper()
	must(t, c.SendRaw([]byte(frame)))
	if e := next(t, c, "error"); e.Code != code {
		t.Fatalf("%s: %s, want %s", frame, e.Raw, code)
	}
}

// listOf reads a JSON list field of a GET answer.
func listOf(t *testing.T, n *node, path, field string) []string {
	t.Helper()
	r := do(t, "GET", n.base+path, "", nil)
	var m map[string][]string
	if r.status != http.StatusOK || json.Unmarshal(r.body, &m) != nil {
		t.Fatalf("GET %s: %d %s", path, r.status, r.body)
	}
	return m[field]
}

func checkList(t *testing.T, n *node, path, field string, want ...string) {
	t.Helper()
	if got := listOf(t, n, path, field); !slices.Equal(got, want) {
		t.Fatalf("GET %s: %s %v, want %v", path, field, got, want)
	}
}

// putRefused expects PUT member to be refused with 429 quota_exceeded.
func putRefused(t *testing.T, n *node, room, user string) {
	t.Helper()
	r := do(t, "PUT", n.base+"/v1/rooms/"+room+"/members/"+user, "", nil)
	if r.status != http.StatusTooManyRequests || r.errorCode(t) != "quota_exceeded" {
		t.Fatalf("PUT %s into %s over a quota: %d %s, want 429 quota_exceeded", user, room, r.status, r.body)
	}
}

func testRoomQuotasHoldAtTheEdge(t *testing.T, be backend) {
	rcv := startReceiver(t)
	a := startNode(t, be, "a", withQuotas(3, 3), withWebhook(rcv))
	b := startNode(t, be, "b", withQuotas(3, 3), withWebhook(rcv))
	p := startBystander(t, a, b, "bystander", nil)

	t.Run("rooms per user over the WebSocket", func(t *testing.T) {
		c, _ := connect(t, a, "wsuser")
		for _, r := range []string{"r1", "r2", "r3"} {
			ack(t, c, `{"type":"join","room":"`+r+`"}`) // the third reaches the quota
		}
		refusedFrame(t, c, `{"type":"join","room":"r4","ref":"4"}`, "quota_exceeded")
		checkList(t, a, "/v1/rooms/r4/members", "members")
		ack(t, c, `{"type":"join","room":"r2"}`) // re-joining at the quota is fine
		ack(t, c, `{"type":"leave","room":"r1"}`)
		ack(t, c, `{"type":"join","room":"r4"}`) // a left room makes room for another
		checkList(t, b, "/v1/users/wsuser/rooms", "rooms", "r2", "r3", "r4")
		waitEvents(t, rcv, "wsuser", []string{"room.joined/r1/client", "room.joined/r2/client", "room.joined/r3/client",
			"room.left/r1/client", "room.joined/r4/client"}, "room.joined", "room.left")
	})

	t.Run("rooms per user over HTTP", func(t *testing.T) {
		for _, r := range []string{"h1", "h2", "h3"} {
			putMember(t, a, r, "apiuser")
		}
		putRefused(t, b, "h4", "apiuser")
		checkList(t, a, "/v1/rooms/h4/members", "members")
		putMember(t, b, "h3", "apiuser")
		do(t, "DELETE", a.base+"/v1/rooms/h1/members/apiuser", "", nil)
		putMember(t, b, "h4", "apiuser")
		checkList(t, a, "/v1/users/apiuser/rooms", "rooms", "h2", "h3", "h4")
	})

	t.Run("members per room over HTTP and the WebSocket", func(t *testing.T) {
		for _, u := range []string{"m1", "m2", "m3"} {
			putMember(t, a, "full", u)
		}
		putRefused(t, b, "full", "m4")
		c, _ := connect(t, b, "m5")
		refusedFrame(t, c, `{"type":"join","room":"full"}`, "quota_exceeded")
		// The refused users hold nothing of the room, on either side.
		checkList(t, a, "/v1/users/m4/rooms", "rooms")
		checkList(t, a, "/v1/users/m5/rooms", "rooms")
		putMember(t, a, "full", "m2")
		do(t, "DELETE", a.base+"/v1/rooms/full/members/m1", "", nil)
		ack(t, c, `{"type":"join","room":"full"}`)
		checkList(t, b, "/v1/rooms/full/members", "members", "m2", "m3", "m5")
		waitEvents(t, rcv, "m5", []string{"room.joined/full/client"}, "room.joined")
		if got := rcv.of("m4", "room.joined"); len(got) != 0 {
			t.Fatalf("refused joins sent events: %v", got)
		}
	})

	if got := limitedTotal(t, a, "rooms_per_user") + limitedTotal(t, b, "rooms_per_user"); got != 2 {
		t.Fatalf("switchboard_limited_total{limit=rooms_per_user}: %d, want 2", got)
	}
	if got := limitedTotal(t, a, "room_members") + limitedTotal(t, b, "room_members"); got != 2 {
		t.Fatalf("switchboard_limited_total{limit=room_members}: %d, want 2", got)
	}
	p.Stop()
}
