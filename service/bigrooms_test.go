package service_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/internal/wsclient"
)

// Big rooms (docs/design.md, "Big rooms: fan-out on read"): the tests run with a low
// threshold so that a room of a few members is big.

func bigThreshold(n int) func(*nodeOptions) {
	return func(o *nodeOptions) { o.subscriptions.BigRoomThreshold = n }
}

// postRoom posts data to room on n and returns the room stream id of the message.
func postRoom(t *testing.T, n *node, room, data string) string {
	t.Helper()
	id, err := postRoomErr(n, room, data)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func postRoomErr(n *node, room, data string) (string, error) {
	r, err := request("POST", n.base+"/v1/rooms/"+room+"/messages", "application/json", strings.NewReader(data))
	if err != nil {
		return "", err
	}
	if r.status != http.StatusAccepted {
		return "", fmt.Errorf("POST to %s: %d %s", room, r.status, r.body)
	}
	var answer struct {
		HistoryID string `json:"history_id"`
	}
	_ = json.Unmarshal(r.body, &answer)
	return answer.HistoryID, nil
}

// roomResumer follows user across reconnects, resuming its big rooms too.
func roomResumer(t *testing.T, user string, nodes ...*node) *wsclient.Resumer {
	r := &wsclient.Resumer{RoomURL: func(attempt int, since, roomSince string) string {
		q := url.Values{"user": {user}}
		if since != "" {
			q.Set("since", since)
		}
		if roomSince != "" {
			q.Set("room_since", roomSince)
		}
		return nodes[attempt%len(nodes)].wsURL(q.Encode())
	}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	waitResumer(t, r, func(r *wsclient.Resumer) bool { return len(r.Welcomes()) > 0 }, "first welcome")
	return r
}

// roomData returns the data of the messages of room, in arrival order.
func roomData(msgs []wsclient.Frame, room string) []string {
	var out []string
	for _, m := range msgs {
		if m.Room == room {
			out = append(out, string(m.Data))
		}
	}
	return out
}

func numbers(from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprint(i))
	}
	return out
}

func testBigRoomIsOneCopyDeliveredToEveryMemberOnEveryNode(t *testing.T, be backend) {
	a := startNode(t, be, "a", bigThreshold(3))
	b := startNode(t, be, "b", bigThreshold(3))
	for _, u := range []string{"alice", "bob", "carol"} {
		putMember(t, a, "big", u)
	}
	alice, w := connect(t, a, "alice")
	bob, _ := connect(t, b, "bob")
	eve, _ := connect(t, b, "eve") // not a member
	if len(w.BigRooms) != 0 {
		t.Fatalf("welcome %s: the room has not turned big yet", w.Raw)
	}
	id := postRoom(t, b, "big", `"first"`)
	for _, c := range []*wsclient.Conn{alice, bob} {
		f := next(t, c, "room_mode")
		if !f.Big || f.Room != "big" {
			t.Fatalf("want the room turning big, got %s", f.Raw)
		}
		m := next(t, c, "message")
		if m.ID != id || !m.Big || m.HistoryID != id || m.Room != "big" || string(m.Data) != `"first"` {
			t.Fatalf("got %s, want big message %s", m.Raw, id)
		}
	}
	noFrame(t, eve, 200*time.Millisecond)
	// One copy: the members' streams hold nothing of it.
	for _, u := range []string{"alice", "bob", "carol"} {
		if got := history(t, a, "/v1/users/"+u+"/messages"); len(got) != 0 {
			t.Fatalf("%s's stream holds %d messages", u, len(got))
		}
	}
	if got := history(t, a, "/v1/rooms/big/messages"); len(got) != 1 || got[0].ID != id {
		t.Fatalf("room history %+v", got)
	}
	// A new connection lists the room with its position.
	_, w = connect(t, b, "carol")
	if len(w.BigRooms) != 1 || w.BigRooms[0].Room != "big" || w.BigRooms[0].LastID != id {
		t.Fatalf("welcome %s: want big room at %s", w.Raw, id)
	}
	// A non-member's send is refused, over the WebSocket too.
	r := do(t, "POST", a.base+"/v1/rooms/big/messages?from=eve", "application/json", strings.NewReader(`1`))
	if r.status != http.StatusAccepted || r.json(t)["recipients"] != float64(3) || r.json(t)["history_id"] == nil {
		t.Fatalf("a backend post: %d %s, want 3 recipients and a history id", r.status, r.body)
	}
	must(t, eve.SendRaw([]byte(`{"type":"send","room":"big","data":1,"ref":"x"}`)))
	if f := next(t, eve, "error"); f.Code != "not_member" {
		t.Fatalf("non-member send: %s", f.Raw)
	}
}

func testBigRoomLosesNothingWhenThePubSubLinkIsCut(t *testing.T, be backend) {
	a := startNode(t, be, "a", bigThreshold(2))
	b := startNode(t, be, "b", bigThreshold(2))
	putMember(t, a, "big", "alice")
	putMember(t, a, "big", "bob")
	postRoom(t, b, "big", `"turns it big"`)
	alice, _ := connect(t, a, "alice")
	var ids []string
	for i := range 300 {
		if i == 150 {
			be.killPubSub(t)
		}
		ids = append(ids, postRoom(t, b, "big", fmt.Sprint(i)))
	}
	var got []wsclient.Frame
	for range 300 {
		got = append(got, next(t, alice, "message"))
	}
	checkExactly(t, got, ids)
	noFrame(t, alice, 200*time.Millisecond)
}

func testBigRoomResumesFromItsPosition(t *testing.T, be backend) {
	a := startNode(t, be, "a", bigThreshold(2))
	b := startNode(t, be, "b", bigThreshold(2))
	putMember(t, a, "big", "alice")
	putMember(t, a, "big", "bob")
	postRoom(t, a, "big", `"turns it big"`)
	alice, _ := connect(t, a, "alice")
	seen := postRoom(t, b, "big", `"seen"`)
	if m := next(t, alice, "message"); m.ID != seen {
		t.Fatalf("got %s", m.Raw)
	}
	alice.Close()
	var missed []string
	for i := range 30 {
		missed = append(missed, postRoom(t, b, "big", fmt.Sprint(i)))
	}
	dm := sendDM(t, b, "alice", `"a dm"`)
	again, w := connect(t, b, "alice", "room_since", "big:"+seen)
	if len(w.BigRooms) != 1 || w.BigRooms[0].LastID != seen || w.BigRooms[0].Recovered == nil || !*w.BigRooms[0].Recovered {
		t.Fatalf("welcome %s: want big room recovered from %s", w.Raw, seen)
	}
	var got []wsclient.Frame
	for len(got) < 30 {
		if f := next(t, again, "message"); f.Room == "big" {
			got = append(got, f)
		} else if f.ID != dm {
			t.Fatalf("got %s", f.Raw)
		}
	}
	checkExactly(t, got, missed)
	live := postRoom(t, a, "big", `"live"`)
	if m := next(t, again, "message"); m.ID != live {
		t.Fatalf("live after replay: %s", m.Raw)
	}
	// A position trimmed away (or never there) says recovered false.
	_, w = connect(t, a, "alice", "room_since", "big:1-1")
	if len(w.BigRooms) != 1 || w.BigRooms[0].Recovered == nil || *w.BigRooms[0].Recovered {
		t.Fatalf("welcome %s: want recovered false", w.Raw)
	}
	// Malformed positions are refused before the upgrade.
	for _, q := range []string{"big", "big:x", "b c:1-1", "big:1-1,big:2-2"} {
		_, err := wsclient.Dial(a.wsURL(url.Values{"user": {"alice"}, "room_since": {q}}.Encode()), wsclient.Options{})
		if refused, ok := err.(*wsclient.ErrRefused); !ok || refused.Status != http.StatusBadRequest {
			t.Fatalf("room_since=%q: %v, want 400", q, err)
		}
	}
}

func testBigRoomMembershipChangesReachTheUsersNodeAtOnce(t *testing.T, be backend) {
	a := startNode(t, be, "a", bigThreshold(2))
	b := startNode(t, be, "b", bigThreshold(2))
	putMember(t, a, "big", "alice")
	putMember(t, a, "big", "bob")
	postRoom(t, a, "big", `"turns it big"`)
	bob, _ := connect(t, a, "bob")
	// Removed on node b: node a stops delivering before the DELETE answers.
	if r := do(t, "DELETE", b.base+"/v1/rooms/big/members/bob", "", nil); r.status != http.StatusNoContent {
		t.Fatalf("DELETE: %d %s", r.status, r.body)
	}
	postRoom(t, b, "big", `"after bob left"`)
	noFrame(t, bob, 300*time.Millisecond)
	// Back in on node b: node a delivers from the join on.
	putMember(t, b, "big", "bob")
	if f := next(t, bob, "room_mode"); !f.Big || f.Room != "big" {
		t.Fatalf("want the room's position, got %s", f.Raw)
	}
	id := postRoom(t, b, "big", `"welcome back"`)
	if m := next(t, bob, "message"); m.ID != id {
		t.Fatalf("got %s, want %s", m.Raw, id)
	}
}

func testRoomGrowingAndShrinkingKeepsOneOrderAndLosesNothing(t *testing.T, be backend) {
	a := startNode(t, be, "a", bigThreshold(4))
	b := startNode(t, be, "b", bigThreshold(4))
	putMember(t, a, "r", "alice")
	putMember(t, a, "r", "bob")
	alice := roomResumer(t, "alice", a, b)
	bob, _ := connect(t, b, "bob")
	sent := 0
	post := func(n int) {
		for range n {
			postRoom(t, []*node{a, b}[sent%2], "r", fmt.Sprint(sent))
			sent++
		}
	}
	post(10) // small
	putMember(t, b, "r", "carol")
	putMember(t, b, "r", "dave")
	post(10) // grows to big at the first of these
	be.killPubSub(t)
	post(10)
	for _, u := range []string{"carol", "dave", "bob"} { // 1 member: below half the threshold
		if r := do(t, "DELETE", a.base+"/v1/rooms/r/members/"+u, "", nil); r.status != http.StatusNoContent {
			t.Fatalf("DELETE %s: %d", u, r.status)
		}
	}
	post(10) // shrinks to small at the first of these
	putMember(t, a, "r", "bob")
	putMember(t, a, "r", "carol")
	putMember(t, a, "r", "dave")
	post(10) // big again
	want := numbers(0, sent)
	waitResumer(t, alice, func(r *wsclient.Resumer) bool { return len(roomData(r.Messages(), "r")) >= sent }, "every message")
	if got := roomData(alice.Messages(), "r"); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("alice got %v, want %v", got, want)
	}
	// The room was small, big, small and big again, as the member counts say.
	var modes strings.Builder
	for _, m := range alice.Messages() {
		if m.Room == "r" {
			modes.WriteString(map[bool]string{true: "B", false: "s"}[m.Big])
		}
	}
	if want := strings.Repeat("s", 10) + strings.Repeat("B", 20) + strings.Repeat("s", 10) + strings.Repeat("B", 10); modes.String() != want {
		t.Fatalf("modes %s, want %s", modes.String(), want)
	}
	var bobGot []string
	for len(bobGot) < 30 {
		f, err := bob.NextWithin(10 * time.Second)
		if err != nil {
			t.Fatalf("bob: %v after %v", err, bobGot)
		}
		if f.Type == "message" {
			bobGot = append(bobGot, string(f.Data))
		}
	}
	if strings.Join(bobGot, ",") != strings.Join(numbers(0, 30), ",") {
		t.Fatalf("bob got %v", bobGot)
	}
}

// A member away when its room turns big resumes with since alone (it kept no position for
// a room it did not know was big): it gets what the room sent from the turn on, after what
// its own stream holds. A resume whose since is later than the turn starts there.
func testRoomTurningBigWhileAMemberIsAwayLosesNothing(t *testing.T, be backend) {
	a := startNode(t, be, "a", bigThreshold(3))
	b := startNode(t, be, "b", bigThreshold(3))
	putMember(t, a, "r", "alice")
	putMember(t, a, "r", "bob")
	alice, _ := connect(t, a, "alice")
	postRoom(t, a, "r", `"small"`)
	last := next(t, alice, "message")
	if last.Big {
		t.Fatalf("a room of 2 delivered big: %s", last.Raw)
	}
	alice.Close()
	putMember(t, b, "r", "carol") // 3 members: big from the next post
	var missed []string
	for i := range 5 {
		missed = append(missed, postRoom(t, b, "r", fmt.Sprint(i)))
	}
	dm := sendDM(t, b, "alice", `"a dm"`)
	again, w := connect(t, b, "alice", "since", last.ID)
	if len(w.BigRooms) != 1 || w.BigRooms[0].Room != "r" {
		t.Fatalf("welcome %s: want r among the big rooms", w.Raw)
	}
	var got []wsclient.Frame
	for len(got) < 5 {
		if f := next(t, again, "message"); f.Room == "r" {
			got = append(got, f)
		} else if f.ID != dm {
			t.Fatalf("got %s", f.Raw)
		}
	}
	checkExactly(t, got, missed)
	again.Close()

	// Since the DM, which is later than the turn: only what came after it.
	after := postRoom(t, a, "r", `"after the dm"`)
	third, _ := connect(t, a, "alice", "since", dm)
	if m := next(t, third, "message"); m.ID != after {
		t.Fatalf("resumed after the dm, got %s, want %s", m.Raw, after)
	}
	noFrame(t, third, 200*time.Millisecond)
}
