package service_test

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/internal/wsclient"
)

// ids returns the ids of frames, in order.
func ids(msgs []wsclient.Frame) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m.ID
	}
	return out
}

// historyFrame sends a history frame and returns its answer, history or error.
func historyFrame(t *testing.T, c *wsclient.Conn, frame string) wsclient.Frame {
	t.Helper()
	must(t, c.SendRaw([]byte(frame)))
	for {
		f := nextFrame(t, c)
		if f.Type == "history" || f.Type == "error" {
			return f
		}
		if f.Type != "message" {
			t.Fatalf("waiting for the answer to %s: got %s", frame, f.Raw)
		}
	}
}

func equalIDs(got, want []string) bool {
	return strings.Join(got, ",") == strings.Join(want, ",")
}

func testRoomHistoryIsKeptOnceAndReadByMembersOnly(t *testing.T, be backend) {
	a := startNode(t, be, "a")
	b := startNode(t, be, "b")
	putMember(t, a, "lobby", "alice")
	putMember(t, a, "lobby", "bob")
	alice, _ := connect(t, a, "alice")
	bob, _ := connect(t, b, "bob")
	carol, _ := connect(t, b, "carol")

	var kept []string // history ids, in order
	for i := range 5 {
		if i < 3 {
			must(t, alice.SendRaw([]byte(fmt.Sprintf(`{"type":"send","room":"lobby","data":%d,"ref":"s%d"}`, i, i))))
			var f, own wsclient.Frame
			for range 2 { // the ack and her own copy, in either order
				if g := nextFrame(t, alice); g.Type == "ack" {
					f = g
				} else {
					own = g
				}
			}
			if f.HistoryID == "" || own.HistoryID != f.HistoryID {
				t.Fatalf("room send ack %s and own copy %s: want the same history_id", f.Raw, own.Raw)
			}
			kept = append(kept, f.HistoryID)
		} else {
			r := do(t, "POST", b.base+"/v1/rooms/lobby/messages", "application/json", strings.NewReader(strconv.Itoa(i)))
			hid, _ := r.json(t)["history_id"].(string)
			if r.status != http.StatusAccepted || hid == "" {
				t.Fatalf("POST room message: %d %s", r.status, r.body)
			}
			kept = append(kept, hid)
			next(t, alice, "message")
		}
		// Every member's copy carries the history id, so a client can match it.
		if m := next(t, bob, "message"); m.HistoryID != kept[i] {
			t.Fatalf("bob's copy %s: want history_id %s", m.Raw, kept[i])
		}
	}
	all := history(t, a, "/v1/rooms/lobby/messages")
	if !equalIDs(ids(all), kept) {
		t.Fatalf("room history %v, want %v", ids(all), kept)
	}
	for i, m := range all {
		if m.Room != "lobby" || string(m.Data) != strconv.Itoa(i) || m.HistoryID != "" {
			t.Fatalf("history entry %d: %+v", i, m)
		}
	}
	for q, want := range map[string][]string{
		"?since=" + kept[1]:               kept[2:],
		"?limit=2":                        kept[:2],
		"?before=" + kept[4] + "&limit=2": kept[2:4],
		"?since=" + kept[4]:               {},
	} {
		if got := history(t, b, "/v1/rooms/lobby/messages"+q); !equalIDs(ids(got), want) {
			t.Fatalf("GET %s: %v, want %v", q, ids(got), want)
		}
	}
	if r := do(t, "GET", a.base+"/v1/rooms/lobby/messages?limit=2", "", nil); !strings.Contains(string(r.body), `"more":true`) {
		t.Fatalf("a page cut by its limit: %s, want more", r.body)
	}
	if got := history(t, a, "/v1/rooms/empty/messages"); len(got) != 0 {
		t.Fatalf("unknown room: %v", got)
	}
	for _, q := range []string{"?since=x", "?before=1-", "?limit=0", "?limit=1001", "?since=1-0&before=2-0"} {
		if r := do(t, "GET", a.base+"/v1/rooms/lobby/messages"+q, "", nil); r.status != http.StatusBadRequest || r.errorCode(t) != "bad_request" {
			t.Fatalf("GET %s: %d %s", q, r.status, r.body)
		}
	}
	if r := do(t, "GET", a.base+"/v1/rooms/bad%20room/messages", "", nil); r.status != http.StatusBadRequest {
		t.Fatalf("bad room name: %d %s", r.status, r.body)
	}

	// The frame: newest first cut, oldest first within the page, paged with before.
	h := historyFrame(t, alice, `{"type":"history","room":"lobby","limit":2,"ref":"h"}`)
	if h.Type != "history" || h.Ref != "h" || h.Room != "lobby" || !h.More || !equalIDs(ids(h.Messages), kept[3:]) {
		t.Fatalf("history frame: %s", h.Raw)
	}
	h = historyFrame(t, alice, `{"type":"history","room":"lobby","limit":5,"before":"`+kept[3]+`"}`)
	if h.More || !equalIDs(ids(h.Messages), kept[:3]) {
		t.Fatalf("history frame before %s: %s", kept[3], h.Raw)
	}
	// Outsiders get not_member and nothing of the room; a late joiner sees what was said.
	if e := historyFrame(t, carol, `{"type":"history","room":"lobby","ref":"c"}`); e.Type != "error" || e.Code != "not_member" || e.Ref != "c" {
		t.Fatalf("outsider's history frame: %s", e.Raw)
	}
	ack(t, carol, `{"type":"join","room":"lobby","ref":"j"}`)
	if h := historyFrame(t, carol, `{"type":"history","room":"lobby"}`); !equalIDs(ids(h.Messages), kept) {
		t.Fatalf("late joiner's history: %s", h.Raw)
	}
	for frame, code := range map[string]string{
		`{"type":"history","room":"lobby","limit":0}`:    "bad_request",
		`{"type":"history","room":"lobby","limit":101}`:  "bad_request",
		`{"type":"history","room":"lobby","limit":"5"}`:  "bad_request",
		`{"type":"history","room":"lobby","limit":2.5}`:  "bad_request",
		`{"type":"history","room":"lobby","before":"x"}`: "bad_request",
		`{"type":"history","room":"lobby","data":1}`:     "bad_request",
		`{"type":"history"}`:                             "invalid_id",
		`{"type":"history","room":"no room"}`:            "invalid_id",
	} {
		if e := historyFrame(t, carol, frame); e.Type != "error" || e.Code != code {
			t.Fatalf("%s: got %s, want %s", frame, e.Raw, code)
		}
	}
}

// A room larger than one script call's group (64) has its history appended by a call of its
// own before the fan-out; its members' copies carry the id all the same.
func testLargeRoomHistoryIDReachesEveryMember(t *testing.T, be backend) {
	a := startNode(t, be, "a")
	for i := range 70 {
		putMember(t, a, "big", "m"+strconv.Itoa(i))
	}
	r := do(t, "POST", a.base+"/v1/rooms/big/messages", "application/json", strings.NewReader(`"hello"`))
	hid, _ := r.json(t)["history_id"].(string)
	if r.status != http.StatusAccepted || hid == "" || r.json(t)["recipients"] != float64(70) {
		t.Fatalf("POST: %d %s", r.status, r.body)
	}
	for _, u := range []string{"m0", "m33", "m69"} {
		if got := history(t, a, "/v1/users/"+u+"/messages"); len(got) != 1 || got[0].HistoryID != hid {
			t.Fatalf("%s's stream: %+v, want one message with history_id %s", u, got, hid)
		}
	}
	if got := history(t, a, "/v1/rooms/big/messages"); len(got) != 1 || got[0].ID != hid {
		t.Fatalf("room history %+v", got)
	}
}

func TestRoomHistoryKeepsItsSizeAndCanBeOff(t *testing.T) {
	be := singleRedis(t)
	small := startNode(t, be, "a", func(o *nodeOptions) { o.subscriptions.RoomHistorySize = 3 })
	putMember(t, small, "r", "alice")
	var kept []string
	for i := range 5 {
		r := do(t, "POST", small.base+"/v1/rooms/r/messages", "application/json", strings.NewReader(strconv.Itoa(i)))
		kept = append(kept, r.json(t)["history_id"].(string))
	}
	if got := history(t, small, "/v1/rooms/r/messages"); !equalIDs(ids(got), kept[2:]) {
		t.Fatalf("a history of 3: %v, want %v", ids(got), kept[2:])
	}
	off := startNode(t, be, "b", func(o *nodeOptions) { o.subscriptions.RoomHistorySize = -1 })
	putMember(t, off, "q", "alice")
	r := do(t, "POST", off.base+"/v1/rooms/q/messages", "application/json", strings.NewReader(`1`))
	if r.status != http.StatusAccepted || r.json(t)["history_id"] != nil {
		t.Fatalf("POST with room history off: %d %s", r.status, r.body)
	}
	if got := history(t, off, "/v1/rooms/q/messages"); len(got) != 0 {
		t.Fatalf("room history off, yet %v", got)
	}
	if got := history(t, off, "/v1/users/alice/messages"); len(got) != 6 || got[5].Room != "q" || got[5].HistoryID != "" {
		t.Fatalf("alice's stream with room history off: %+v", got)
	}
}

// What one history frame makes the node read is bounded in bytes, and a connection's
// history frames in rate: a hostile client gets a few pages, then rate_limited.
func TestHistoryFramesAreBoundedInBytesAndRate(t *testing.T) {
	n := startNode(t, singleRedis(t), "a")
	putMember(t, n, "r", "alice")
	alice, _ := connect(t, n, "alice")
	big := `"` + strings.Repeat("x", 60000) + `"`
	for range 10 {
		if r := do(t, "POST", n.base+"/v1/rooms/r/messages", "application/json", strings.NewReader(big)); r.status != http.StatusAccepted {
			t.Fatalf("POST: %d %s", r.status, r.body)
		}
		next(t, alice, "message")
	}
	all := history(t, n, "/v1/rooms/r/messages")
	h := historyFrame(t, alice, `{"type":"history","room":"r","limit":10}`)
	if len(h.Messages) != 4 || !h.More || !equalIDs(ids(h.Messages), ids(all[6:])) {
		t.Fatalf("a page of 10 × 60 KB: %d messages (more %v), want the newest 4 within 256 KiB", len(h.Messages), h.More)
	}
	var served, limited int
	start := time.Now()
	for i := range 40 {
		must(t, alice.SendRaw([]byte(`{"type":"history","room":"r","limit":1,"ref":"`+strconv.Itoa(i)+`"}`)))
	}
	for range 40 {
		f := nextFrame(t, alice)
		switch {
		case f.Type == "history":
			served++
		case f.Type == "error" && f.Code == "rate_limited" && retryAfterMS(t, f) > 0:
			limited++
		default:
			t.Fatalf("answer %s", f.Raw)
		}
	}
	// The burst was 20 and one page was read before; the rest refills at 10/s.
	if most := 19 + int(time.Since(start).Seconds()*10) + 1; served > most || limited == 0 {
		t.Fatalf("%d served, %d limited in %v: want at most %d served", served, limited, time.Since(start), most)
	}
}
