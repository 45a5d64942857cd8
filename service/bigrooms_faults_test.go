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
