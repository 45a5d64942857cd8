package service_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/switchboard-dev/switchboard/internal/wsclient"
)

// ack sends a frame with ref and waits for its ack, failing on an error frame.
func ack(t *testing.T, c *wsclient.Conn, frame string) wsclient.Frame {
	t.Helper()
	must(t, c.SendRaw([]byte(frame)))
	return next(t, c, "ack")
}

func putMember(t *testing.T, n *node, room, user string) {
	t.Helper()
	if r := do(t, "PUT", n.base+"/v1/rooms/"+room+"/members/"+user, "", nil); r.status != http.StatusNoContent {
		t.Fatalf("PUT member: %d %s", r.status, r.body)
	}
}

func testRoomMessagesReachEveryMemberOnEveryNodeAndDevice(t *testing.T, be backend) {
	a := startNode(t, be, "a")
	b := startNode(t, be, "b")
	alice, _ := connect(t, a, "alice")
	aliceTab, _ := connect(t, b, "alice")
	bobPhone, _ := connect(t, a, "bob")
	bobLaptop, _ := connect(t, b, "bob")
	carol, _ := connect(t, b, "carol")

	if f := ack(t, alice, `{"type":"join","room":"lobby","ref":"1"}`); f.Ref != "1" {
		t.Fatalf("join ack %s", f.Raw)
	}
	putMember(t, b, "lobby", "bob")
	putMember(t, b, "lobby", "bob") // idempotent

	// The sender's own connection gets the message too, before or after the ack.
	must(t, alice.SendRaw([]byte(`{"type":"send","room":"lobby","data":{"text":"hi all"},"ref":"2"}`)))
	got := map[string]wsclient.Frame{}
	for range 2 {
		f, err := alice.NextWithin(10 * time.Second)
		must(t, err)
		got[f.Type] = f
	}
	if f := got["ack"]; f.Ref != "2" || f.Recipients == nil || *f.Recipients != 2 {
		t.Fatalf("room send ack %s, want recipients 2", f.Raw)
	}
	if m := got["message"]; m.Room != "lobby" || m.From != "alice" {
		t.Fatalf("sender's own copy: %s", m.Raw)
	}
	for name, c := range map[string]*wsclient.Conn{"alice's tab": aliceTab, "bob's phone": bobPhone, "bob's laptop": bobLaptop} {
		m := next(t, c, "message")
		if m.Room != "lobby" || m.From != "alice" || string(m.Data) != `{"text":"hi all"}` {
			t.Fatalf("%s got %s", name, m.Raw)
		}
	}
	noFrame(t, carol, 100*time.Millisecond)

	// A backend posts to the room by HTTP.
	r := do(t, "POST", a.base+"/v1/rooms/lobby/messages?from=system", "text/plain", strings.NewReader("maintenance at noon"))
	if r.status != http.StatusAccepted || r.json(t)["recipients"] != float64(2) {
		t.Fatalf("POST room message: %d %s", r.status, r.body)
	}
	for _, c := range []*wsclient.Conn{alice, aliceTab, bobPhone, bobLaptop} {
		if m := next(t, c, "message"); m.From != "system" || m.Room != "lobby" || string(m.Data) != `"maintenance at noon"` {
			t.Fatalf("got %s", m.Raw)
		}
	}

	// Outsiders may not post; nothing is delivered.
	must(t, carol.SendRaw([]byte(`{"type":"send","room":"lobby","data":1,"ref":"x"}`)))
	if e := next(t, carol, "error"); e.Code != "not_member" || e.Ref != "x" {
		t.Fatalf("outsider post: %s", e.Raw)
	}
	noFrame(t, bobPhone, 100*time.Millisecond)

	// After leaving (by WebSocket, or removed by HTTP), no more room messages.
	ack(t, alice, `{"type":"leave","room":"lobby","ref":"3"}`)
	r = do(t, "POST", a.base+"/v1/rooms/lobby/messages", "application/json", strings.NewReader(`"after alice left"`))
	if r.json(t)["recipients"] != float64(1) {
		t.Fatalf("recipients after leave: %s", r.body)
	}
	next(t, bobPhone, "message")
	next(t, bobLaptop, "message")
	noFrame(t, alice, 100*time.Millisecond)
	noFrame(t, aliceTab, 0)
	if r := do(t, "DELETE", a.base+"/v1/rooms/lobby/members/bob", "", nil); r.status != http.StatusNoContent {
		t.Fatalf("DELETE member: %d %s", r.status, r.body)
	}
	r = do(t, "POST", a.base+"/v1/rooms/lobby/messages", "application/json", strings.NewReader(`"empty room"`))
	if r.json(t)["recipients"] != float64(0) {
		t.Fatalf("recipients of an empty room: %s", r.body)
	}
	noFrame(t, bobPhone, 100*time.Millisecond)
	must(t, alice.SendRaw([]byte(`{"type":"send","room":"lobby","data":1,"ref":"late"}`)))
	if e := next(t, alice, "error"); e.Code != "not_member" {
		t.Fatalf("post after leaving: %s", e.Raw)
	}
}

func TestRoomListingsAndNoKeysLeftBehind(t *testing.T) {
	srv, rdb := startRedis(t)
	a := startNode(t, onRedis(srv), "a")
	alice, _ := connect(t, a, "alice")
	ack(t, alice, `{"type":"join","room":"lobby"}`)
	ack(t, alice, `{"type":"join","room":"dev"}`)
	ack(t, alice, `{"type":"join","room":"dev"}`) // joining twice is fine
	putMember(t, a, "dev", "zoe")
	putMember(t, a, "dev", "bob")

	listing := func(path, want string) {
		t.Helper()
		r := do(t, "GET", a.base+path, "", nil)
		if r.status != http.StatusOK || strings.TrimSpace(string(r.body)) != want {
			t.Fatalf("GET %s: %d %s, want %s", path, r.status, r.body, want)
		}
	}
	listing("/v1/rooms/dev/members", `{"members":["alice","bob","zoe"]}`)
	listing("/v1/users/alice/rooms", `{"rooms":["dev","lobby"]}`)
	listing("/v1/rooms/nowhere/members", `{"members":[]}`)
	listing("/v1/users/nobody/rooms", `{"rooms":[]}`)
	// Membership outlives connections.
	alice.Close()
	listing("/v1/rooms/lobby/members", `{"members":["alice"]}`)

	// Post once so the fan-out lock has existed, then everyone leaves.
	do(t, "POST", a.base+"/v1/rooms/dev/messages", "application/json", strings.NewReader(`1`))
	for _, m := range []struct{ room, user string }{{"lobby", "alice"}, {"dev", "alice"}, {"dev", "zoe"}, {"dev", "bob"}, {"dev", "bob"}} {
		if r := do(t, "DELETE", a.base+"/v1/rooms/"+m.room+"/members/"+m.user, "", nil); r.status != http.StatusNoContent {
			t.Fatalf("DELETE: %d %s", r.status, r.body)
		}
	}
	var left []string
	for _, pattern := range []string{"*room*", "*lock*", "*members*"} {
		left = append(left, rdb.Keys(context.Background(), pattern).Val()...)
	}
	if len(left) != 0 {
		t.Fatalf("keys left after every member left: %v", left)
	}
}

func TestRoomRefusals(t *testing.T) {
	srv, _ := startRedis(t)
	a := startNode(t, onRedis(srv), "a")
	for _, tc := range []struct{ method, path string }{
		{"PUT", "/v1/rooms/bad%20room/members/bob"},
		{"PUT", "/v1/rooms/lobby/members/b:ob"},
		{"DELETE", "/v1/rooms/%7Bx%7D/members/bob"},
		{"GET", "/v1/rooms/" + strings.Repeat("r", 129) + "/members"},
		{"GET", "/v1/users/bad%20user/rooms"},
		{"POST", "/v1/rooms/bad%2Croom/messages"},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			r := do(t, tc.method, a.base+tc.path, "application/json", strings.NewReader(`1`))
			if r.status != http.StatusBadRequest || r.errorCode(t) != "invalid_id" {
				t.Fatalf("%d %s", r.status, r.body)
			}
		})
	}
	if r := do(t, "POST", a.base+"/v1/rooms/lobby/messages?from=a%20b", "application/json", strings.NewReader(`1`)); r.status != http.StatusBadRequest || r.errorCode(t) != "invalid_id" {
		t.Fatalf("bad from: %d %s", r.status, r.body)
	}
	if r := do(t, "POST", a.base+"/v1/rooms/lobby/messages", "application/json", strings.NewReader(`{bad`)); r.status != http.StatusBadRequest || r.errorCode(t) != "bad_json" {
		t.Fatalf("bad JSON to a room: %d %s", r.status, r.body)
	}
	if r := do(t, "DELETE", a.base+"/v1/rooms/lobby/messages", "", nil); r.status != http.StatusMethodNotAllowed || r.errorCode(t) != "method_not_allowed" {
		t.Fatalf("DELETE room messages: %d %s", r.status, r.body)
	}
	// A malformed join gets an error frame and the connection stays usable.
	c, _ := connect(t, a, "alice")
	must(t, c.SendRaw([]byte(`{"type":"join","room":"no spaces","ref":"1"}`)))
	if e := next(t, c, "error"); e.Code != "invalid_id" || e.Ref != "1" {
		t.Fatalf("bad join: %s", e.Raw)
	}
	must(t, c.SendRaw([]byte(`{"type":"join","ref":"2"`)))
	if e := next(t, c, "error"); e.Code != "bad_json" {
		t.Fatalf("truncated join: %s", e.Raw)
	}
	ack(t, c, `{"type":"join","room":"ok","ref":"3"}`)
}

func testEveryMemberSeesRoomMessagesInTheSameOrder(t *testing.T, be backend) {
	a := startNode(t, be, "a")
	b := startNode(t, be, "b")
	members := []string{"m1", "m2", "m3", "m4"}
	conns := map[string]*wsclient.Conn{}
	for i, m := range members {
		putMember(t, a, "race", m)
		conns[m], _ = connect(t, []*node{a, b}[i%2], m)
	}
	const posters, each = 4, 40
	var g errgroup.Group // the posters' errors come back to the test's goroutine
	for p := range posters {
		g.Go(func() error {
			n := []*node{a, b}[p%2]
			for i := range each {
				r, err := request("POST", n.base+"/v1/rooms/race/messages", "application/json", strings.NewReader(fmt.Sprintf(`"%d-%d"`, p, i)))
				if err != nil {
					return err
				}
				if r.status != http.StatusAccepted {
					return fmt.Errorf("post: %d %s", r.status, r.body)
				}
			}
			return nil
		})
	}
	must(t, g.Wait())
	var first []string
	for _, m := range members {
		var order []string
		for range posters * each {
			order = append(order, string(next(t, conns[m], "message").Data))
		}
		if first == nil {
			first = order
			continue
		}
		for i := range order {
			if order[i] != first[i] {
				t.Fatalf("%s saw %s at position %d where %s saw %s", m, order[i], i, members[0], first[i])
			}
		}
	}
}
