package service_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/internal/wsclient"
)

// Payloads nested deeper than 64 levels, duplicate keys and keys that differ from a known
// one only in case are refused wherever JSON enters, with bad_json (or bad_request for an
// unknown field of a frame) and nothing stored: a browser's JSON.stringify throws from about
// 5,000 levels, and one such message blanked a whole conversation in the app.

// nested returns compact JSON nested depth levels deep, arrays and single-key objects
// alternating around the number 1; depth 0 is just 1.
func nested(depth int) string {
	var open, closing strings.Builder
	for i := range depth {
		if i%2 == 0 {
			open.WriteString(`[`)
		} else {
			open.WriteString(`{"k":`)
		}
	}
	for i := depth - 1; i >= 0; i-- {
		if i%2 == 0 {
			closing.WriteString(`]`)
		} else {
			closing.WriteString(`}`)
		}
	}
	return open.String() + "1" + closing.String()
}

// nextSkippingMessages reads frames until one of type typ arrives, skipping message frames
// (a room's sender gets its own messages), failing on anything else.
func nextSkippingMessages(t *testing.T, c *wsclient.Conn, typ string) wsclient.Frame {
	t.Helper()
	for {
		f, err := c.NextWithin(10 * time.Second)
		if err != nil {
			t.Fatalf("waiting for a %s frame: %v", typ, err)
		}
		if f.Type == typ {
			return f
		}
		if f.Type != "message" {
			t.Fatalf("want a %s frame, got %s", typ, f.Raw)
		}
	}
}

// errorMessage returns the message of an error body.
func errorMessage(t *testing.T, r response) string {
	t.Helper()
	var e struct{ Error struct{ Message string } }
	if err := json.Unmarshal(r.body, &e); err != nil {
		t.Fatalf("status %d: body is not an error object: %q", r.status, r.body)
	}
	return e.Error.Message
}

// checkNoneFor fails if user has any stored message: the user a refused request named
// instead of (or besides) bob.
func (b *bystanders) checkNoneFor(t *testing.T, user string) {
	t.Helper()
	if got := b.history(t, user, ""); len(got) != 0 {
		t.Fatalf("%s's stream holds %v, want nothing", user, got)
	}
}

func TestNestedJSONOverHTTPIsRefusedBeyond64Levels(t *testing.T) {
	srv, _ := startRedis(t)
	n := startNode(t, onRedis(srv), "a")
	b := newBystanders(t, n)
	putMember(t, n, "lobby", "bob")
	p := startBystander(t, n, n, "bystander", nil)
	batch := func(data string) string {
		return `{"messages":[{"user":"bob","data":1},{"user":"bob","data":` + data + `}]}`
	}
	cases := []struct {
		name, path, body string
		refused          bool
		says             string // in the refusal's message
	}{
		{"a DM nested 64 levels is accepted", "/v1/users/bob/messages", nested(64), false, ""},
		{"a DM nested 65 levels is refused", "/v1/users/bob/messages", nested(65), true, "nested deeper than 64 levels"},
		{"a DM nested 9,000 levels is refused", "/v1/users/bob/messages", nested(9000), true, "nested deeper than 64 levels"},
		{"a DM of 9,000 open brackets is refused", "/v1/users/bob/messages", strings.Repeat("[", 9000), true, "nested deeper than 64 levels"},
		{"a room message nested 64 levels is accepted", "/v1/rooms/lobby/messages", nested(64), false, ""},
		{"a room message nested 65 levels is refused", "/v1/rooms/lobby/messages", nested(65), true, "nested deeper than 64 levels"},
		{"a room message nested 9,000 levels is refused", "/v1/rooms/lobby/messages", nested(9000), true, "nested deeper than 64 levels"},
		{"a batch item nested 64 levels is accepted", "/v1/messages", batch(nested(64)), false, ""},
		{"a batch item nested 65 levels is refused", "/v1/messages", batch(nested(65)), true, `messages[1]: "data" is nested deeper than 64 levels`},
		{"a batch item nested 9,000 levels is refused", "/v1/messages", batch(nested(9000)), true, `messages[1]: "data" is nested deeper than 64 levels`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, "POST", n.base+tc.path, "application/json", strings.NewReader(tc.body))
			if tc.refused {
				checkRefusal(t, r, http.StatusBadRequest, "bad_json")
				if msg := errorMessage(t, r); !strings.Contains(msg, tc.says) {
					t.Fatalf("refusal %q does not say %q", msg, tc.says)
				}
				b.checkUntouched(t)
				return
			}
			if r.status != http.StatusAccepted {
				t.Fatalf("status %d: %.300s", r.status, r.body)
			}
			want := tc.body
			if tc.path == "/v1/messages" {
				if m := next(t, b.bob, "message"); string(m.Data) != "1" {
					t.Fatalf("bob got %.200s, want the batch's first item", m.Raw)
				}
				want = nested(64)
			}
			m := next(t, b.bob, "message")
			if string(m.Data) != want {
				t.Fatalf("bob got %.200s, want the payload nested 64 levels", m.Raw)
			}
			b.last = m.ID
			b.checkUntouched(t)
		})
	}
	p.Stop() // fails on any loss; logs the p99
}

func TestNestedJSONInWebSocketFramesIsRefusedAndTheConnectionStaysOpen(t *testing.T) {
	rcv := startReceiver(t)
	srv, _ := startRedis(t)
	n := startNode(t, onRedis(srv), "a", withWebhook(rcv))
	b := newBystanders(t, n)
	alice, _ := connect(t, n, "alice")
	putMember(t, n, "lobby", "bob")
	putMember(t, n, "lobby", "alice")
	p := startBystander(t, n, n, "bystander", nil)
	send := func(data, ref string) string {
		return `{"type":"send","to":"bob","data":` + data + `,"ref":"` + ref + `"}`
	}
	room := func(data, ref string) string {
		return `{"type":"send","room":"lobby","data":` + data + `,"ref":"` + ref + `"}`
	}
	event := func(data, ref string) string {
		return `{"type":"event","name":"deep","data":` + data + `,"ref":"` + ref + `"}`
	}
	cases := []struct {
		name, frame string
		refused     bool
		ref         string // the ref the refusal echoes
	}{
		{"a DM nested 64 levels is accepted", send(nested(64), "d64"), false, ""},
		{"a DM nested 65 levels is refused", send(nested(65), "d65"), true, "d65"},
		{"a DM nested 9,000 levels is refused", send(nested(9000), "d9000"), true, "d9000"},
		{"a DM whose ref comes after 9,000 levels still gets its ref", `{"type":"send","to":"bob","data":` + nested(9000) + `,"ref":"late"}`, true, "late"},
		{"a room message nested 64 levels is accepted", room(nested(64), "r64"), false, ""},
		{"a room message nested 65 levels is refused", room(nested(65), "r65"), true, "r65"},
		{"a room message nested 9,000 levels is refused", room(nested(9000), "r9000"), true, "r9000"},
		{"an event nested 64 levels is accepted", event(nested(64), "e64"), false, ""},
		{"an event nested 65 levels is refused", event(nested(65), "e65"), true, "e65"},
		{"an event nested 9,000 levels is refused", event(nested(9000), "e9000"), true, "e9000"},
		{"an unknown field nested 65 levels is refused as too deep", `{"type":"send","to":"bob","data":1,"x":` + nested(65) + `,"ref":"x65"}`, true, "x65"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			must(t, alice.SendRaw([]byte(tc.frame)))
			if tc.refused {
				e := nextSkippingMessages(t, alice, "error")
				if e.Code != "bad_json" || e.Ref != tc.ref || !strings.Contains(e.Message, "nested deeper than 64 levels") {
					t.Fatalf("got %s, want a bad_json error with ref %q that names the depth", e.Raw, tc.ref)
				}
				must(t, alice.SendRaw([]byte(`{"type":"send","to":"x","data":1,"ref":"ok"}`)))
				if ack := nextSkippingMessages(t, alice, "ack"); ack.Ref != "ok" || ack.ID == "" {
					t.Fatalf("after the refusal a valid send got %s, want its ack", ack.Raw)
				}
				b.checkUntouched(t)
				return
			}
			nextSkippingMessages(t, alice, "ack")
			if !strings.HasPrefix(tc.name, "an event") {
				m := next(t, b.bob, "message")
				if string(m.Data) != nested(64) {
					t.Fatalf("bob got %.200s, want the payload nested 64 levels", m.Raw)
				}
				b.last = m.ID
			}
			b.checkUntouched(t)
		})
	}
	// The queue holds exactly the accepted event and the marker sent after every case: a
	// refused event left nothing behind.
	ack(t, alice, `{"type":"event","name":"marker","data":1,"ref":"m"}`)
	waitEvents(t, rcv, "alice", []string{"client.event/deep/" + nested(64), "client.event/marker/1"}, "client.event")
	p.Stop() // fails on any loss; logs the p99
}

func TestDuplicateAndCaseVariantKeysAreRefusedOverHTTP(t *testing.T) {
	srv, _ := startRedis(t)
	n := startNode(t, onRedis(srv), "a")
	b := newBystanders(t, n)
	p := startBystander(t, n, n, "bystander", nil)
	cases := []struct {
		name, path, body string
		code, says       string
	}{
		{"a payload with a duplicate key is refused", "/v1/users/bob/messages", `{"a":1,"a":2}`, "bad_json", `duplicate key at "/a"`},
		{"a payload with a duplicate key deep inside is refused", "/v1/users/bob/messages", `{"x":[{"b":{"c":1,"d":2,"c":3}}]}`, "bad_json", `duplicate key at "/x/0/b/c"`},
		{"a duplicate key written with an escape is refused", "/v1/users/bob/messages", `{"a":1,"\u0061":2}`, "bad_json", "duplicate key"},
		{"a room payload with a duplicate key is refused", "/v1/rooms/lobby/messages", `{"a":1,"a":2}`, "bad_json", "duplicate key"},
		{"a batch naming messages twice is refused", "/v1/messages", `{"messages":[{"user":"mallory","data":1}],"messages":[{"user":"bob","data":1}]}`, "bad_json", "duplicate key"},
		{"a batch item naming user twice is refused", "/v1/messages", `{"messages":[{"user":"bob","user":"mallory","data":1}]}`, "bad_json", "duplicate key"},
		{"a batch item naming data twice is refused", "/v1/messages", `{"messages":[{"user":"bob","data":1,"data":2}]}`, "bad_json", "duplicate key"},
		{"a batch item whose data has a duplicate key is refused", "/v1/messages", `{"messages":[{"user":"bob","data":{"a":1,"a":2}}]}`, "bad_json", "duplicate key"},
		{"a batch item's USER is an unknown field, not user", "/v1/messages", `{"messages":[{"user":"bob","USER":"mallory","data":1}]}`, "bad_json", `unknown field "USER"`},
		{"a batch item's User alone is an unknown field", "/v1/messages", `{"messages":[{"User":"mallory","data":1}]}`, "bad_json", `unknown field "User"`},
		{"a batch item's Data is an unknown field, not data", "/v1/messages", `{"messages":[{"user":"bob","Data":1}]}`, "bad_json", `unknown field "Data"`},
		{"a batch's MESSAGES is an unknown field, not messages", "/v1/messages", `{"MESSAGES":[{"user":"bob","data":1}]}`, "bad_json", `unknown field "MESSAGES"`},
		{"a batch item's user that is not a string is refused", "/v1/messages", `{"messages":[{"user":["bob"],"data":1}]}`, "bad_json", `"user" must be a string`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, "POST", n.base+tc.path, "application/json", strings.NewReader(tc.body))
			checkRefusal(t, r, http.StatusBadRequest, tc.code)
			if msg := errorMessage(t, r); !strings.Contains(msg, tc.says) {
				t.Fatalf("refusal %q does not say %q", msg, tc.says)
			}
			b.checkUntouched(t)
			b.checkNoneFor(t, "mallory")
		})
	}
	p.Stop() // fails on any loss; logs the p99
}

func TestDuplicateAndCaseVariantKeysAreRefusedInWebSocketFrames(t *testing.T) {
	srv, _ := startRedis(t)
	n := startNode(t, onRedis(srv), "a")
	b := newBystanders(t, n)
	alice, _ := connect(t, n, "alice")
	p := startBystander(t, n, n, "bystander", nil)
	cases := []struct {
		name, frame string
		code, ref   string
		says        string
	}{
		{"a frame naming to twice is refused", `{"type":"send","to":"bob","to":"mallory","data":1,"ref":"d1"}`, "bad_json", "", "duplicate key"},
		{"a frame naming type twice is refused", `{"type":"join","type":"send","room":"lobby","to":"mallory","data":1}`, "bad_json", "", "duplicate key"},
		{"a frame naming data twice is refused", `{"type":"send","to":"bob","data":1,"data":2,"ref":"d3"}`, "bad_json", "", "duplicate key"},
		{"a frame naming ref twice is refused", `{"type":"send","to":"bob","data":1,"ref":"a","ref":"b"}`, "bad_json", "", "duplicate key"},
		{"a frame whose data has a duplicate key is refused", `{"type":"send","to":"bob","data":{"a":{"b":1,"b":2}},"ref":"d5"}`, "bad_json", "", `duplicate key at "/data/a/b"`},
		{"an event whose data has a duplicate key is refused", `{"type":"event","name":"x","data":{"a":1,"a":2},"ref":"d6"}`, "bad_json", "", "duplicate key"},
		{"a Type is an unknown field, not type", `{"Type":"send","to":"bob","data":1,"ref":"c1"}`, "bad_request", "c1", `unknown field "Type"`},
		{"a Data is an unknown field, not data", `{"type":"send","to":"bob","Data":1,"ref":"c2"}`, "bad_request", "c2", `unknown field "Data"`},
		{"a TO beside to is an unknown field, not taken", `{"type":"send","to":"bob","TO":"mallory","data":1,"ref":"c3"}`, "bad_request", "c3", `unknown field "TO"`},
		{"a TO after to is an unknown field, not taken", `{"type":"send","TO":"mallory","to":"bob","data":1,"ref":"c4"}`, "bad_request", "c4", `unknown field "TO"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			must(t, alice.SendRaw([]byte(tc.frame)))
			e := next(t, alice, "error")
			if e.Code != tc.code || e.Ref != tc.ref || !strings.Contains(e.Message, tc.says) {
				t.Fatalf("got %s, want an error with code %q and ref %q saying %s", e.Raw, tc.code, tc.ref, tc.says)
			}
			must(t, alice.SendRaw([]byte(`{"type":"send","to":"x","data":1,"ref":"ok"}`)))
			if ack := next(t, alice, "ack"); ack.Ref != "ok" || ack.ID == "" {
				t.Fatalf("after the refusal a valid send got %s, want its ack", ack.Raw)
			}
			b.checkUntouched(t)
			b.checkNoneFor(t, "mallory")
		})
	}
	p.Stop() // fails on any loss; logs the p99
}

// A payload that only looks odd stays accepted: keys that differ in case are different
// keys, escaped lone surrogates pass as before, and the same key in sibling objects is no
// duplicate.
func TestStrictJSONStillAcceptsWhatIsValid(t *testing.T) {
	srv, _ := startRedis(t)
	n := startNode(t, onRedis(srv), "a")
	b := newBystanders(t, n)
	for _, body := range []string{
		`{"a":1,"A":2}`,
		`"\ud83d"`,
		`[{"a":1},{"a":2}]`,
		`{"a":{"a":{"a":1}}}`,
		" \t\n{\"a\":\"\\u0000\"}\n",
	} {
		id := b.post(t, "bob", body)
		if m := next(t, b.bob, "message"); m.ID != id {
			t.Fatalf("bob got %s, want %s", m.Raw, id)
		}
		b.last = id
	}
	got := b.history(t, "bob", "")
	if len(got) != 5 {
		t.Fatalf("bob's history %v", got)
	}
	var a struct{ Results []struct{ ID string } }
	r := do(t, "POST", n.base+"/v1/messages", "application/json", strings.NewReader(`{"messages":[{"user":"bob","data":{"user":"x","USER":"y"}}]}`))
	if r.status != http.StatusAccepted || json.Unmarshal(r.body, &a) != nil || len(a.Results) != 1 {
		t.Fatalf("batch: %d %s", r.status, r.body)
	}
	if m := next(t, b.bob, "message"); m.ID != a.Results[0].ID {
		t.Fatalf("bob got %s", m.Raw)
	}
	b.last = a.Results[0].ID
	b.checkUntouched(t)
}
