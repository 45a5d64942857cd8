package service_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/internal/wsclient"
)

// Slow consumers and drain in big rooms: the same closes as for any message, and a resume
// with room_since that loses nothing.

func testBigRoomStalledReaderIsClosedWith1013AndResumesWithoutLoss(t *testing.T, be backend) {
	a := startNode(t, be, "a", bigThreshold(2), func(o *nodeOptions) {
		o.service.MaxQueueMessages = 64
		o.service.MaxQueueBytes = 1 << 20
	})
	putMember(t, a, "big", "slow")
	putMember(t, a, "big", "fast")
	postRoom(t, a, "big", `"turns it big"`)
	stalled, err := wsclient.Dial(a.wsURL("user=slow"), wsclient.Options{Buffer: 1})
	must(t, err)
	t.Cleanup(stalled.Close)
	w := next(t, stalled, "welcome")
	if len(w.BigRooms) != 1 {
		t.Fatalf("welcome %s: want the big room", w.Raw)
	}
	fast, _ := connect(t, a, "fast")
	large := `"` + strings.Repeat("x", 60000) + `"`
	var ids []string
	for i := 0; a.srvSlowCloses() == 0; i++ {
		if i == 2000 {
			t.Fatal("2000 large messages and the stalled reader was never closed")
		}
		ids = append(ids, postRoom(t, a, "big", large))
		if m := next(t, fast, "message"); m.ID != ids[len(ids)-1] {
			t.Fatalf("fast got %s", m.Raw)
		}
	}
	var got []wsclient.Frame
	for {
		f, err := stalled.NextWithin(10 * time.Second)
		if err != nil {
			break
		}
		if f.Type == "message" {
			got = append(got, f)
		}
	}
	if code, err := stalled.CloseCode(); code != 1013 {
		t.Fatalf("close code %d (%v), want 1013", code, err)
	}
	checkExactly(t, got, ids[:len(got)])
	pos := w.BigRooms[0].LastID
	if len(got) > 0 {
		pos = got[len(got)-1].ID
	}
	// More than the queue holds is waiting: the replay is paced, not dropped again.
	for range 100 {
		ids = append(ids, postRoom(t, a, "big", large))
	}
	again, w2 := connect(t, a, "slow", "room_since", "big:"+pos)
	if len(w2.BigRooms) != 1 || w2.BigRooms[0].Recovered == nil || !*w2.BigRooms[0].Recovered {
		t.Fatalf("welcome %s: want recovered", w2.Raw)
	}
	var rest []wsclient.Frame
	for range len(ids) - len(got) {
		rest = append(rest, next(t, again, "message"))
	}
	checkExactly(t, rest, ids[len(got):])
}

func testBigRoomDrainingNodeClosesWith1012AndClientsResumeElsewhere(t *testing.T, be backend) {
	a := startNode(t, be, "a", bigThreshold(2))
	b := startNode(t, be, "b", bigThreshold(2))
	putMember(t, a, "big", "bob")
	putMember(t, a, "big", "carol")
	postRoom(t, a, "big", `"turns it big"`)
	bob := roomResumer(t, "bob", a, b)
	var ids []string
	for i := range 200 {
		if i == 50 {
			a.Stop()
		}
		ids = append(ids, postRoom(t, b, "big", fmt.Sprint(i)))
	}
	waitResumer(t, bob, func(r *wsclient.Resumer) bool { return len(r.Messages()) >= len(ids) }, "all messages")
	checkExactly(t, bob.Messages(), ids)
	if closes := bob.Closes(); len(closes) != 1 || closes[0] != 1012 {
		t.Fatalf("closes %v, want [1012]", closes)
	}
}

func testBigRoomClientSendsLeavesAndEphemeralsOverTheWebSocket(t *testing.T, be backend) {
	a := startNode(t, be, "a", bigThreshold(2))
	b := startNode(t, be, "b", bigThreshold(2))
	alice, _ := connect(t, a, "alice")
	bob, _ := connect(t, b, "bob")
	ack(t, alice, `{"type":"join","room":"big","ref":"j"}`)
	ack(t, bob, `{"type":"join","room":"big","ref":"j"}`)
	// The first send turns the room big; the sender gets its own message, as a member.
	must(t, alice.SendRaw([]byte(`{"type":"send","room":"big","data":"hi","ref":"s"}`)))
	var acked, got wsclient.Frame
	for acked.Type == "" || got.Type == "" {
		switch f := nextFrame(t, alice); f.Type {
		case "ack":
			acked = f
		case "message":
			got = f
		case "room_mode":
		default:
			t.Fatalf("alice got %s", f.Raw)
		}
	}
	if acked.HistoryID == "" || acked.Recipients == nil || *acked.Recipients != 2 || got.ID != acked.HistoryID || !got.Big {
		t.Fatalf("ack %s and message %s: want 2 recipients and the big message's id", acked.Raw, got.Raw)
	}
	next(t, bob, "room_mode")
	if m := next(t, bob, "message"); m.ID != acked.HistoryID || m.From != "alice" {
		t.Fatalf("bob got %s", m.Raw)
	}
	// An ephemeral send reaches the members that are connected, once, and is not kept.
	must(t, bob.SendRaw([]byte(`{"type":"send","room":"big","data":{"typing":true},"ephemeral":true,"ref":"e"}`)))
	ephemeral(t, "alice", nextFrame(t, alice), "bob", "big", `{"typing":true}`)
	for seen := 0; seen < 2; seen++ { // bob's ack, and bob's own copy as a member, in any order
		if f := nextFrame(t, bob); f.Type != "ack" && !f.Ephemeral {
			t.Fatalf("bob got %s", f.Raw)
		}
	}
	if got := history(t, a, "/v1/rooms/big/messages"); len(got) != 1 {
		t.Fatalf("room history %+v: the ephemeral message was kept", got)
	}
	// A leave over the WebSocket stops the room at once, on the node that holds the user.
	ack(t, bob, `{"type":"leave","room":"big","ref":"l"}`)
	postRoom(t, a, "big", `"bob is gone"`)
	if m := next(t, alice, "message"); string(m.Data) != `"bob is gone"` {
		t.Fatalf("alice got %s", m.Raw)
	}
	for {
		f, err := bob.NextWithin(300 * time.Millisecond)
		if err != nil {
			break
		}
		if f.Type == "message" {
			t.Fatalf("bob got %s after leaving", f.Raw)
		}
	}
}
