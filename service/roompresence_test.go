package service_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/internal/testutil"
)

// roomOnline reads GET /v1/rooms/{room}/presence.
func roomOnline(t *testing.T, n *node, room string) []string {
	t.Helper()
	r := do(t, "GET", n.base+"/v1/rooms/"+room+"/presence", "", nil)
	var body struct{ Online []string }
	if r.status != http.StatusOK || json.Unmarshal(r.body, &body) != nil || body.Online == nil {
		t.Fatalf("GET presence of %s: %d %s", room, r.status, r.body)
	}
	return body.Online
}

func testRoomPresenceListsMembersOnlineOnAnyNode(t *testing.T, be backend) {
	a := startNode(t, be, "a")
	b := startNode(t, be, "b")
	for _, u := range []string{"alice", "bob", "carol"} {
		putMember(t, a, "lobby", u)
	}
	alice, _ := connect(t, a, "alice")
	bob, _ := connect(t, b, "bob")
	bobPhone, _ := connect(t, a, "bob")
	eve, _ := connect(t, b, "eve")
	if got := roomOnline(t, b, "lobby"); !slices.Equal(got, []string{"alice", "bob"}) {
		t.Fatalf("online %v, want alice and bob (carol has no connection, eve is no member)", got)
	}
	must(t, alice.SendRaw([]byte(`{"type":"presence","room":"lobby","ref":"p"}`)))
	if f := next(t, alice, "presence"); f.Ref != "p" || f.Room != "lobby" || !slices.Equal(f.Online, []string{"alice", "bob"}) {
		t.Fatalf("presence frame: %s", f.Raw)
	}
	must(t, eve.SendRaw([]byte(`{"type":"presence","room":"lobby","ref":"e"}`)))
	if e := next(t, eve, "error"); e.Code != "not_member" || e.Ref != "e" {
		t.Fatalf("outsider's presence frame: %s", e.Raw)
	}
	must(t, eve.SendRaw([]byte(`{"type":"presence","room":"lobby","data":1}`)))
	if e := next(t, eve, "error"); e.Code != "bad_request" {
		t.Fatalf("presence frame with data: %s", e.Raw)
	}
	// A user with a device left is online; with none, not.
	bob.Close()
	if got := roomOnline(t, a, "lobby"); !slices.Equal(got, []string{"alice", "bob"}) {
		t.Fatalf("with bob's phone still open: %v", got)
	}
	bobPhone.Close()
	testutil.WaitFor(t, 5*time.Second, func() bool { return slices.Equal(roomOnline(t, a, "lobby"), []string{"alice"}) }, "bob to go offline")
	if got := roomOnline(t, a, "nobody-here"); len(got) != 0 {
		t.Fatalf("unknown room: %v", got)
	}
	if r := do(t, "GET", a.base+"/v1/rooms/a%20b/presence", "", nil); r.status != http.StatusBadRequest || r.errorCode(t) != "invalid_id" {
		t.Fatalf("bad room: %d %s", r.status, r.body)
	}
}
