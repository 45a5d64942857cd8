package service_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/switchboard-dev/switchboard/internal/wsclient"
	"github.com/switchboard-dev/switchboard/tokens"
)

// Permissions (v2): in token mode a join needs a rooms grant or membership, a client DM a
// dm grant; a room send needs membership. A refusal is forbidden (not_member for room
// sends) and changes nothing: no member added, nothing in any stream, nothing delivered.

const permSecret = "jwt-secret-for-permission-tests"

// dialClaims connects with an HS256 token holding claims (sub and a one-hour exp added)
// and returns the connection and its welcome.
func dialClaims(t *testing.T, n *node, sub string, claims jwt.MapClaims) (*wsclient.Conn, wsclient.Frame) {
	t.Helper()
	mc := jwt.MapClaims{"sub": sub, "exp": time.Now().Add(time.Hour).Unix()}
	for k, v := range claims {
		mc[k] = v
	}
	c, err := wsclient.Dial(n.wsURL("token="+mintToken(t, jwt.SigningMethodHS256, []byte(permSecret), mc)), wsclient.Options{})
	if err != nil {
		t.Fatalf("dial %s with claims %v: %v", sub, claims, err)
	}
	t.Cleanup(c.Close)
	return c, next(t, c, "welcome")
}

// answer sends frame and returns the ack or error frame that answers it, skipping the
// sender's own copies of room messages.
func answer(t *testing.T, c *wsclient.Conn, frame string) wsclient.Frame {
	t.Helper()
	must(t, c.SendRaw([]byte(frame)))
	for {
		f, err := c.NextWithin(10 * time.Second)
		if err != nil {
			t.Fatalf("waiting for the answer to %s: %v", frame, err)
		}
		if f.Type == "ack" || f.Type == "error" {
			return f
		}
		if f.Type != "message" {
			t.Fatalf("unexpected frame %s while waiting for the answer to %s", f.Raw, frame)
		}
	}
}

func members(t *testing.T, n *node, room string) []string {
	t.Helper()
	r := do(t, "GET", n.base+"/v1/rooms/"+room+"/members", "", nil)
	var m struct{ Members []string }
	if r.status != http.StatusOK || json.Unmarshal(r.body, &m) != nil {
		t.Fatalf("GET members of %s: %d %s", room, r.status, r.body)
	}
	return m.Members
}

func storedFor(t *testing.T, n *node, user string) int {
	t.Helper()
	r := do(t, "GET", n.base+"/v1/users/"+user+"/messages?limit=1000", "", nil)
	var m struct{ Messages []json.RawMessage }
	if r.status != http.StatusOK || json.Unmarshal(r.body, &m) != nil {
		t.Fatalf("GET messages of %s: %d %s", user, r.status, r.body)
	}
	return len(m.Messages)
}

func TestPermissionMatrix(t *testing.T) {
	srv, _ := startRedis(t)
	n := startNode(t, onRedis(srv), "a", withSecret(t, []byte(permSecret)))
	probe := startBystander(t, n, n, "bystander", nil, "token",
		mintToken(t, jwt.SigningMethodHS256, []byte(permSecret), jwt.MapClaims{"sub": "bystander", "exp": time.Now().Add(time.Hour).Unix()}))
	// The backend made alice a member of "member-only", which no grant names.
	putMember(t, n, "member-only", "alice")

	grants := map[string]jwt.MapClaims{
		"none":          {},
		"empty lists":   {"rooms": []string{}, "dm": []string{}},
		"exact":         {"rooms": []string{"board"}, "dm": []string{"bob"}},
		"prefix":        {"rooms": []string{"team-42.*"}, "dm": []string{"support.*"}},
		"everything":    {"rooms": []string{"*"}, "dm": []string{"*"}},
		"rooms, not dm": {"rooms": []string{"*"}},
	}
	type step struct {
		frame   string
		allowed map[string]bool // by grant name; absent = refused
		code    string          // the refusal's code
	}
	all := map[string]bool{"none": true, "empty lists": true, "exact": true, "prefix": true, "everything": true, "rooms, not dm": true}
	steps := []step{
		{`{"type":"join","room":"board-secret","ref":"j1"}`, map[string]bool{"everything": true, "rooms, not dm": true}, "forbidden"},
		{`{"type":"join","room":"board","ref":"j2"}`, map[string]bool{"exact": true, "everything": true, "rooms, not dm": true}, "forbidden"},
		{`{"type":"join","room":"team-42.design","ref":"j3"}`, map[string]bool{"prefix": true, "everything": true, "rooms, not dm": true}, "forbidden"},
		{`{"type":"join","room":"team-420","ref":"j4"}`, map[string]bool{"everything": true, "rooms, not dm": true}, "forbidden"},
		{`{"type":"join","room":"member-only","ref":"j5"}`, all, ""},
		{`{"type":"send","to":"bob","data":"hi","ref":"d1"}`, map[string]bool{"exact": true, "everything": true}, "forbidden"},
		{`{"type":"send","to":"bobby","data":"hi","ref":"d2"}`, map[string]bool{"everything": true}, "forbidden"},
		{`{"type":"send","to":"support.7","data":"hi","ref":"d3"}`, map[string]bool{"prefix": true, "everything": true}, "forbidden"},
		{`{"type":"send","room":"member-only","data":"hi","ref":"r1"}`, all, ""},
		{`{"type":"send","room":"lobby","data":"hi","ref":"r2"}`, map[string]bool{}, "not_member"},
		// Ephemeral sends are checked as stored ones are.
		{`{"type":"send","to":"bob","data":"typing","ephemeral":true,"ref":"e1"}`, map[string]bool{"exact": true, "everything": true}, "forbidden"},
		{`{"type":"send","room":"lobby","data":"typing","ephemeral":true,"ref":"e2"}`, map[string]bool{}, "not_member"},
		{`{"type":"leave","room":"never-joined","ref":"l1"}`, all, ""},
	}
	for name, claims := range grants {
		t.Run(name, func(t *testing.T) {
			alice, w := dialClaims(t, n, "alice", claims)
			if !slices.Contains(w.Rooms, "member-only") {
				t.Fatalf("welcome rooms %v, want member-only in them", w.Rooms)
			}
			for _, s := range steps {
				var frame struct{ Ref, To, Room, Type string }
				must(t, json.Unmarshal([]byte(s.frame), &frame))
				var beforeTo int
				var beforeMembers []string
				if frame.To != "" {
					beforeTo = storedFor(t, n, frame.To)
				} else {
					beforeMembers = members(t, n, frame.Room)
				}
				f := answer(t, alice, s.frame)
				if f.Ref != frame.Ref {
					t.Fatalf("%s: answer %s has another ref", s.frame, f.Raw)
				}
				if s.allowed[name] {
					if f.Type != "ack" {
						t.Fatalf("%s with %s: %s, want an ack", s.frame, name, f.Raw)
					}
					continue
				}
				if f.Type != "error" || f.Code != s.code {
					t.Fatalf("%s with %s: %s, want error %s", s.frame, name, f.Raw, s.code)
				}
				// Nothing changed: no member added, nothing stored for the recipient.
				if frame.To == "" && !slices.Equal(members(t, n, frame.Room), beforeMembers) {
					t.Fatalf("%s refused, but the members changed from %v", s.frame, beforeMembers)
				}
				if frame.To != "" && storedFor(t, n, frame.To) != beforeTo {
					t.Fatalf("%s refused, but something was stored for %s", s.frame, frame.To)
				}
			}
			// Undo the allowed joins, so that the next grant starts from the same rooms.
			for _, room := range []string{"board-secret", "board", "team-42.design", "team-420"} {
				answer(t, alice, fmt.Sprintf(`{"type":"leave","room":%q}`, room))
			}
		})
	}
	t.Logf("bystander p99 %v", probe.Stop())
}

// A refused DM reaches no connection of its recipient, and a refused join delivers none of
// the room's messages.
func TestRefusedJoinAndDMDeliverNothing(t *testing.T) {
	srv, _ := startRedis(t)
	n := startNode(t, onRedis(srv), "a", withSecret(t, []byte(permSecret)))
	bob, _ := dialClaims(t, n, "bob", nil)
	alice, _ := dialClaims(t, n, "alice", jwt.MapClaims{"dm": []string{"carol"}})
	if f := answer(t, alice, `{"type":"join","room":"board-secret","ref":"1"}`); f.Code != "forbidden" {
		t.Fatalf("join: %s, want forbidden", f.Raw)
	}
	if f := answer(t, alice, `{"type":"send","to":"bob","data":"psst","ref":"2"}`); f.Code != "forbidden" || !strings.Contains(f.Message, "dm") {
		t.Fatalf("DM: %s, want forbidden naming the dm claim", f.Raw)
	}
	putMember(t, n, "board-secret", "bob")
	if r := do(t, "POST", n.base+"/v1/rooms/board-secret/messages", "application/json", strings.NewReader(`"secret"`)); r.status != http.StatusAccepted {
		t.Fatalf("room post: %d %s", r.status, r.body)
	}
	if m := next(t, bob, "message"); m.Room != "board-secret" {
		t.Fatalf("bob got %s, want the room message", m.Raw)
	}
	noFrame(t, alice, 300*time.Millisecond)
	noFrame(t, bob, 100*time.Millisecond)
}

// Dev mode stays open: no claims, and every join and DM is allowed.
func TestDevModeAllowsEveryJoinAndDM(t *testing.T) {
	srv, _ := startRedis(t)
	n := startNode(t, onRedis(srv), "a")
	alice, _ := connect(t, n, "alice")
	for _, frame := range []string{`{"type":"join","room":"board-secret","ref":"1"}`, `{"type":"send","to":"anyone","data":1,"ref":"2"}`} {
		if f := answer(t, alice, frame); f.Type != "ack" {
			t.Fatalf("%s in dev mode: %s", frame, f.Raw)
		}
	}
	if f := answer(t, alice, `{"type":"refresh","token":"x.y.z","ref":"3"}`); f.Code != "bad_request" {
		t.Fatalf("refresh in dev mode: %s, want bad_request", f.Raw)
	}
}

// Malformed grants refuse the token at connect: a typo must not grant something else.
func TestMalformedGrantsRefuseTheToken(t *testing.T) {
	srv, _ := startRedis(t)
	n := startNode(t, onRedis(srv), "a", withSecret(t, []byte(permSecret)))
	for _, claims := range []jwt.MapClaims{
		{"rooms": "lobby"},
		{"rooms": []any{1}},
		{"dm": []string{"a*b"}},
		{"dm": []string{"**"}},
		{"rooms": []string{"bad room"}},
		{"rooms": []string{""}},
	} {
		claims["sub"], claims["exp"] = "alice", time.Now().Add(time.Hour).Unix()
		checkRefusedToken(t, n, mintToken(t, jwt.SigningMethodHS256, []byte(permSecret), claims), "invalid token")
	}
}

func testWelcomeListsTheUsersRooms(t *testing.T, be backend) {
	n := startNode(t, be, "a")
	_, w := connect(t, n, "alice")
	if !strings.Contains(string(w.Raw), `"rooms":[]`) {
		t.Fatalf("welcome of a user in no room: %s, want \"rooms\":[]", w.Raw)
	}
	for _, room := range []string{"zeta", "alpha", "mid"} {
		putMember(t, n, room, "alice")
	}
	_, w = connect(t, n, "alice")
	if want := []string{"alpha", "mid", "zeta"}; !slices.Equal(w.Rooms, want) {
		t.Fatalf("welcome rooms %v, want %v", w.Rooms, want)
	}
}

// tokenNode is a token-mode node whose tokens get a leeway of leeway, so that expiry tests
// wait seconds, not the default 30 s.
func tokenNode(t *testing.T, leeway time.Duration) *node {
	srv, _ := startRedis(t)
	return startNode(t, onRedis(srv), "a", withTokens(t, tokens.Config{Secret: []byte(permSecret), Leeway: leeway}))
}

func shortToken(t *testing.T, sub string, life time.Duration, claims jwt.MapClaims) (string, time.Time) {
	exp := time.Now().Add(life).Truncate(time.Second)
	mc := jwt.MapClaims{"sub": sub, "exp": exp.Unix(), "iat": time.Now().Unix()}
	for k, v := range claims {
		mc[k] = v
	}
	return mintToken(t, jwt.SigningMethodHS256, []byte(permSecret), mc), exp
}

// A connection not refreshed is told it expires, then closed with 4003 — not before its
// exp plus the leeway.
func TestExpiredConnectionIsClosedWith4003(t *testing.T) {
	const leeway = 500 * time.Millisecond
	n := tokenNode(t, leeway)
	tok, exp := shortToken(t, "alice", 3*time.Second, nil)
	c, err := wsclient.Dial(n.wsURL("token="+tok), wsclient.Options{})
	must(t, err)
	t.Cleanup(c.Close)
	next(t, c, "welcome")
	f := next(t, c, "expiring")
	if f.In == nil || *f.In < 0 || *f.In > 3 {
		t.Fatalf("expiring %s, want in between 0 and 3 seconds", f.Raw)
	}
	select {
	case <-c.Done():
	case <-time.After(exp.Add(leeway).Add(10 * time.Second).Sub(time.Now())):
		t.Fatal("the connection outlived its token by 10 s")
	}
	if time.Now().Before(exp.Add(leeway)) {
		t.Fatalf("closed at %v, before exp + leeway %v", time.Now(), exp.Add(leeway))
	}
	if code, _ := c.CloseCode(); code != 4003 {
		t.Fatalf("close code %d, want 4003", code)
	}
}

// A refresh replaces the token: the connection outlives the old exp, the new grants
// replace the old ones, and a refused refresh (another sub, a bad token) changes nothing.
func TestRefreshKeepsTheConnectionAndReplacesItsGrants(t *testing.T) {
	const leeway = 500 * time.Millisecond
	n := tokenNode(t, leeway)
	carol, _ := dialClaims(t, n, "carol", nil)
	tok, oldExp := shortToken(t, "alice", 3*time.Second, jwt.MapClaims{"dm": []string{"bob"}})
	c, err := wsclient.Dial(n.wsURL("token="+tok), wsclient.Options{})
	must(t, err)
	t.Cleanup(c.Close)
	next(t, c, "welcome")
	next(t, c, "expiring")

	other, _ := shortToken(t, "mallory", time.Hour, jwt.MapClaims{"dm": []string{"*"}})
	for _, bad := range []string{other, tok + "x", "not-a-token", mintToken(t, jwt.SigningMethodHS256, []byte("other secret"), jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix()})} {
		if f := answer(t, c, fmt.Sprintf(`{"type":"refresh","token":%q,"ref":"bad"}`, bad)); f.Code != "forbidden" || f.Ref != "bad" {
			t.Fatalf("refresh with a bad token: %s, want forbidden", f.Raw)
		}
	}
	// The refused refreshes changed nothing: the old grant still holds.
	if f := answer(t, c, `{"type":"send","to":"bob","data":1,"ref":"d0"}`); f.Type != "ack" {
		t.Fatalf("DM under the old grant: %s", f.Raw)
	}
	fresh, _ := shortToken(t, "alice", time.Hour, jwt.MapClaims{"dm": []string{"carol"}})
	if f := answer(t, c, fmt.Sprintf(`{"type":"refresh","token":%q,"ref":"r1"}`, fresh)); f.Type != "ack" || f.Ref != "r1" {
		t.Fatalf("refresh: %s, want ack", f.Raw)
	}
	if f := answer(t, c, `{"type":"send","to":"bob","data":1,"ref":"d1"}`); f.Code != "forbidden" {
		t.Fatalf("DM to bob after the refresh dropped that grant: %s, want forbidden", f.Raw)
	}
	// Past the old token's end, the connection still works both ways (a DM every 100 ms,
	// well under the frame rate limit).
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for ; time.Now().Before(oldExp.Add(leeway + time.Second)); <-tick.C {
		if f := answer(t, c, `{"type":"send","to":"carol","data":"still here","ref":"d2"}`); f.Type != "ack" {
			t.Fatalf("DM to carol under the new grant: %s", f.Raw)
		}
		if m := next(t, carol, "message"); m.From != "alice" {
			t.Fatalf("carol got %s", m.Raw)
		}
	}
	id := sendDM(t, n, "alice", `"after the old exp"`)
	if m := next(t, c, "message"); m.ID != id {
		t.Fatalf("after the old exp: %s, want message %s", m.Raw, id)
	}
}

// A refused refresh leaves the old expiry: the connection still closes with 4003.
func TestRefusedRefreshLeavesTheOldExpiry(t *testing.T) {
	const leeway = 500 * time.Millisecond
	n := tokenNode(t, leeway)
	tok, exp := shortToken(t, "alice", 3*time.Second, nil)
	c, err := wsclient.Dial(n.wsURL("token="+tok), wsclient.Options{})
	must(t, err)
	t.Cleanup(c.Close)
	next(t, c, "welcome")
	next(t, c, "expiring")
	other, _ := shortToken(t, "bob", time.Hour, nil)
	if f := answer(t, c, fmt.Sprintf(`{"type":"refresh","token":%q}`, other)); f.Code != "forbidden" {
		t.Fatalf("refresh with bob's token: %s, want forbidden", f.Raw)
	}
	select {
	case <-c.Done():
	case <-time.After(exp.Add(leeway).Add(10 * time.Second).Sub(time.Now())):
		t.Fatal("the connection outlived its token by 10 s after a refused refresh")
	}
	if code, _ := c.CloseCode(); code != 4003 {
		t.Fatalf("close code %d, want 4003", code)
	}
}
