package main

import (
	"encoding/json"
	"net/http"
	"reflect"
	"testing"
)

func TestAuthorizeRules(t *testing.T) {
	cases := []struct {
		name  string
		req   map[string]string
		allow bool
	}{
		{"a member joins her team's room", map[string]string{"action": "join", "user": "alice", "room": "team.red.general"}, true},
		{"a member of two teams joins the second's room", map[string]string{"action": "join", "user": "bob", "room": "team.blue.standup"}, true},
		{"a non-member is refused a team room", map[string]string{"action": "join", "user": "carol", "room": "team.red.general"}, false},
		{"a user without a team is refused a team room", map[string]string{"action": "join", "user": "dave", "room": "team.red.general"}, false},
		{"the bare team name is not a team room", map[string]string{"action": "join", "user": "alice", "room": "team.red"}, false},
		{"a team room needs a topic", map[string]string{"action": "join", "user": "alice", "room": "team.red."}, false},
		{"an empty team name matches no team", map[string]string{"action": "join", "user": "alice", "room": "team..general"}, false},
		{"an unknown team has no members", map[string]string{"action": "join", "user": "alice", "room": "team.green.general"}, false},
		{"a room outside the rules is refused", map[string]string{"action": "join", "user": "alice", "room": "admins"}, false},
		{"a prefix that only looks like a team room is refused", map[string]string{"action": "join", "user": "alice", "room": "teams.red.general"}, false},
		{"teammates may write to each other", map[string]string{"action": "send", "user": "alice", "to": "bob"}, true},
		{"teammates through the other team too", map[string]string{"action": "send", "user": "carol", "to": "bob"}, true},
		{"users without a common team may not", map[string]string{"action": "send", "user": "alice", "to": "carol"}, false},
		{"a user without a team may not write to a team member", map[string]string{"action": "send", "user": "dave", "to": "alice"}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			body := wantStatus(t, f.post("/hooks/authorize", c.req), http.StatusOK)
			want := map[string]any{"allow": c.allow, "cache_s": float64(60)}
			if !reflect.DeepEqual(body, want) {
				t.Fatalf("answer %v, want %v", body, want)
			}
		})
	}
}

func TestAuthorizeRefusesMalformedQuestions(t *testing.T) {
	cases := []struct {
		name string
		body any
	}{
		{"not JSON", `{"action":`},
		{"an unknown action", map[string]string{"action": "delete", "user": "alice", "room": "team.red.x"}},
		{"no action", map[string]string{"user": "alice", "room": "team.red.x"}},
		{"no user", map[string]string{"action": "join", "room": "team.red.x"}},
		{"an invalid user id", map[string]string{"action": "join", "user": "al ice", "room": "team.red.x"}},
		{"a join without a room", map[string]string{"action": "join", "user": "alice", "to": "bob"}},
		{"a send without a recipient", map[string]string{"action": "send", "user": "alice", "room": "team.red.x"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			body := wantStatus(t, f.post("/hooks/authorize", c.body), http.StatusBadRequest)
			// A 4xx is a refusal for Switchboard too; the body must never read as an allow.
			if body["allow"] != nil {
				t.Fatalf("a malformed question was answered %v", body)
			}
		})
	}
}

func TestRPCMethods(t *testing.T) {
	cases := []struct {
		name   string
		req    string
		status int
		want   any // the decoded answer
	}{
		{"echo returns its data", `{"user":"alice","method":"echo","data":{"n":[1,2],"s":"x"},"node":"n1"}`,
			200, map[string]any{"n": []any{1.0, 2.0}, "s": "x"}},
		{"echo of a string", `{"user":"alice","method":"echo","data":"hi","node":"n1"}`, 200, "hi"},
		{"echo without data answers null", `{"user":"alice","method":"echo","node":"n1"}`, 200, nil},
		{"whoami names the user, node and teams", `{"user":"bob","method":"whoami","data":null,"node":"n2"}`,
			200, map[string]any{"user": "bob", "node": "n2", "teams": []any{"blue", "red"}}},
		{"whoami of a user without a team", `{"user":"dave","method":"whoami","node":"n1"}`,
			200, map[string]any{"user": "dave", "node": "n1", "teams": []any{}}},
		{"orders.get returns the caller's order", `{"user":"alice","method":"orders.get","data":{"id":"A-1001"},"node":"n1"}`,
			200, map[string]any{"id": "A-1001", "owner": "alice", "item": "keyboard", "status": "shipped"}},
		{"orders.get of an unknown order is 404", `{"user":"alice","method":"orders.get","data":{"id":"Z-9"},"node":"n1"}`,
			404, map[string]any{"error": map[string]any{"code": "not_found", "message": "no order Z-9"}}},
		{"orders.get of someone else's order is 404 too", `{"user":"alice","method":"orders.get","data":{"id":"B-2001"},"node":"n1"}`,
			404, map[string]any{"error": map[string]any{"code": "not_found", "message": "no order B-2001"}}},
		{"orders.get without an id is 400", `{"user":"alice","method":"orders.get","data":{},"node":"n1"}`,
			400, map[string]any{"error": map[string]any{"code": "bad_request", "message": `pass {"id":"<order id>"}`}}},
		{"orders.get with data of the wrong shape is 400", `{"user":"alice","method":"orders.get","data":[1],"node":"n1"}`,
			400, map[string]any{"error": map[string]any{"code": "bad_request", "message": `pass {"id":"<order id>"}`}}},
		{"an unknown method is 404", `{"user":"alice","method":"orders.delete","data":{"id":"A-1001"},"node":"n1"}`,
			404, map[string]any{"error": map[string]any{"code": "unknown_method", "message": "no method orders.delete"}}},
		{"a call without a user is 400", `{"method":"echo","data":1,"node":"n1"}`,
			400, map[string]any{"error": map[string]any{"code": "bad_request", "message": "the body is not an rpc request"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			w := f.post("/hooks/rpc", c.req)
			if w.Code != c.status {
				t.Fatalf("status %d, want %d; body %s", w.Code, c.status, w.Body)
			}
			var got any
			if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
				t.Fatalf("answer is not JSON: %v: %s", err, w.Body)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("answer %v, want %v", got, c.want)
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q, want application/json", ct)
			}
		})
	}
}
