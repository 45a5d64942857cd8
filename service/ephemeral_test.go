package service_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/internal/wsclient"
)

// ephemeral checks that f is an ephemeral message from from with data: no id, nothing
// that a client could resume from.
func ephemeral(t *testing.T, who string, f wsclient.Frame, from, room, data string) {
	t.Helper()
	if f.Type != "message" || !f.Ephemeral || f.ID != "" || f.HistoryID != "" || f.From != from || f.Room != room || string(f.Data) != data {
		t.Fatalf("%s got %s, want an ephemeral message from %q in %q with %s", who, f.Raw, from, room, data)
	}
}

func testEphemeralSendsArePublishedNeverStored(t *testing.T, be backend) {
	a := startNode(t, be, "a")
	b := startNode(t, be, "b")
	putMember(t, a, "lobby", "alice")
	putMember(t, a, "lobby", "bob")
	alice, _ := connect(t, a, "alice")
	bob, _ := connect(t, b, "bob")
	bobPhone, _ := connect(t, a, "bob")
	carol, _ := connect(t, b, "carol")

	// A DM: no id, no copy on the sender's devices, on every device of the recipient.
	f := ack(t, alice, `{"type":"send","to":"bob","data":{"typing":true},"ephemeral":true,"ref":"1"}`)
	if f.Ref != "1" || f.ID != "" || f.CopyID != "" || f.Copy != nil {
		t.Fatalf("ack of an ephemeral DM %s: want no id", f.Raw)
	}
	ephemeral(t, "bob", nextFrame(t, bob), "alice", "", `{"typing":true}`)
	ephemeral(t, "bob's phone", nextFrame(t, bobPhone), "alice", "", `{"typing":true}`)
	// A room send: to every member, the sender included; no history id.
	must(t, alice.SendRaw([]byte(`{"type":"send","room":"lobby","data":"x","ephemeral":true,"ref":"2"}`)))
	for range 2 {
		switch f := nextFrame(t, alice); f.Type {
		case "ack":
			if f.Recipients == nil || *f.Recipients != 2 || f.HistoryID != "" || f.ID != "" {
				t.Fatalf("ack of an ephemeral room send %s", f.Raw)
			}
		default:
			ephemeral(t, "alice", f, "alice", "lobby", `"x"`)
		}
	}
	ephemeral(t, "bob", nextFrame(t, bob), "alice", "lobby", `"x"`)
	ephemeral(t, "bob's phone", nextFrame(t, bobPhone), "alice", "lobby", `"x"`)
	// Permission checks still apply.
	must(t, carol.SendRaw([]byte(`{"type":"send","room":"lobby","data":1,"ephemeral":true,"ref":"c"}`)))
	if e := next(t, carol, "error"); e.Code != "not_member" || e.Ref != "c" {
		t.Fatalf("outsider's ephemeral room send: %s", e.Raw)
	}

	// Over HTTP.
	r := do(t, "POST", b.base+"/v1/users/bob/messages?ephemeral=true&from=sys", "text/plain", strings.NewReader("ping"))
	if r.status != http.StatusAccepted || strings.TrimSpace(string(r.body)) != `{"ephemeral":true}` {
		t.Fatalf("ephemeral POST DM: %d %s", r.status, r.body)
	}
	ephemeral(t, "bob", nextFrame(t, bob), "sys", "", `"ping"`)
	r = do(t, "POST", a.base+"/v1/rooms/lobby/messages?ephemeral=true", "application/json", strings.NewReader(`{"cursor":[1,2]}`))
	if r.status != http.StatusAccepted || r.json(t)["recipients"] != float64(2) || r.json(t)["history_id"] != nil {
		t.Fatalf("ephemeral POST room: %d %s", r.status, r.body)
	}
	ephemeral(t, "bob", nextFrame(t, bob), "", "lobby", `{"cursor":[1,2]}`)
	for _, path := range []string{"/v1/users/bob/messages?ephemeral=yes", "/v1/rooms/lobby/messages?ephemeral=1"} {
		if r := do(t, "POST", a.base+path, "application/json", strings.NewReader(`1`)); r.status != http.StatusBadRequest || r.errorCode(t) != "bad_request" {
			t.Fatalf("POST %s: %d %s", path, r.status, r.body)
		}
	}

	// Nothing was stored: no stream holds any of it, and a resume replays none of it.
	for _, path := range []string{"/v1/users/bob/messages", "/v1/users/alice/messages", "/v1/rooms/lobby/messages"} {
		if got := history(t, a, path); len(got) != 0 {
			t.Fatalf("GET %s after ephemeral sends only: %+v", path, got)
		}
	}
	again, w := connect(t, b, "bob", "since", "0-0")
	if w.Recovered == nil || !*w.Recovered {
		t.Fatalf("welcome %s", w.Raw)
	}
	noFrame(t, again, 200*time.Millisecond)
	// A stored message after them is delivered as ever.
	id := sendDM(t, a, "bob", `"stored"`)
	if m := next(t, bob, "message"); m.ID != id || m.Ephemeral {
		t.Fatalf("bob got %s, want %s", m.Raw, id)
	}
}
