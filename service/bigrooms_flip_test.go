package service_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/internal/wsclient"
)

// Rooms turning big and small: by default at a thousand members, and many times under
// concurrent sends.

func testRoomFlippingUnderConcurrentSendsKeepsOneOrderForEveryMember(t *testing.T, be backend) {
	a := startNode(t, be, "a", bigThreshold(6))
	b := startNode(t, be, "b", bigThreshold(6))
	putMember(t, a, "r", "alice")
	putMember(t, a, "r", "zed")
	alice := roomResumer(t, "alice", a, b)
	zed := roomResumer(t, "zed", b, a)
	const senders, each = 4, 60
	posted := make(chan string, senders*each)
	errs := make(chan error, senders)
	for s := range senders {
		go func() {
			for i := range each {
				id, err := postRoomErr([]*node{a, b}[s%2], "r", fmt.Sprintf(`"%d-%d"`, s, i))
				if err != nil {
					errs <- err
					return
				}
				posted <- id
			}
			errs <- nil
		}()
	}
	toggled := []string{"m1", "m2", "m3", "m4"}
	for flip := 0; flip < 6; flip++ {
		for _, u := range toggled {
			if flip%2 == 0 {
				putMember(t, b, "r", u)
			} else if r := do(t, "DELETE", a.base+"/v1/rooms/r/members/"+u, "", nil); r.status != http.StatusNoContent {
				t.Fatalf("DELETE %s: %d", u, r.status)
			}
		}
		if flip == 3 {
			be.killPubSub(t)
		}
	}
	for range senders {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	close(posted)
	want := map[string]bool{}
	for id := range posted {
		want[id] = true
	}
	for name, r := range map[string]*wsclient.Resumer{"alice": alice, "zed": zed} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := r.WaitFor(ctx, func(r *wsclient.Resumer) bool { return len(roomHistoryIDs(r.Messages())) >= len(want) })
		cancel()
		if err != nil {
			got := map[string]bool{}
			for _, id := range roomHistoryIDs(r.Messages()) {
				got[id] = true
			}
			for id := range want {
				if !got[id] {
					t.Errorf("%s is missing %s", name, id)
				}
			}
			t.Fatalf("%s got %d of %d messages (closes %v), in modes %s", name, len(got), len(want), r.Closes(), modeString(r.Messages()))
		}
		got := roomHistoryIDs(r.Messages())
		t.Logf("%s: %d messages, the mode changed %d times between them", name, len(got), modeChanges(r.Messages()))
		if len(got) != len(want) {
			t.Fatalf("%s got %d messages, want %d", name, len(got), len(want))
		}
		for i, id := range got {
			if !want[id] {
				t.Fatalf("%s got %s, never posted", name, id)
			}
			if i > 0 && !idBefore(got[i-1], id) {
				t.Fatalf("%s: %s after %s: out of the room's order (or twice)", name, id, got[i-1])
			}
		}
	}
}

// roomHistoryIDs returns the room stream ids of the room messages, in arrival order.
func roomHistoryIDs(msgs []wsclient.Frame) []string {
	var out []string
	for _, m := range msgs {
		if m.Room != "" {
			out = append(out, m.HistoryID)
		}
	}
	return out
}

// idBefore reports whether stream id x is older than y.
func idBefore(x, y string) bool {
	var xm, xs, ym, ys uint64
	fmt.Sscanf(x, "%d-%d", &xm, &xs)
	fmt.Sscanf(y, "%d-%d", &ym, &ys)
	return xm < ym || xm == ym && xs < ys
}

// modeChanges counts the changes between big and per-member delivery along msgs.
func modeChanges(msgs []wsclient.Frame) int {
	n, last := 0, false
	for i, m := range msgs {
		if i > 0 && m.Big != last {
			n++
		}
		last = m.Big
	}
	return n
}

func TestAThousandMemberRoomIsBigByDefaultUnlessTurnedOff(t *testing.T) {
	be := singleRedis(t)
	on := startNode(t, be, "on")
	off := startNode(t, be, "off", bigThreshold(-1)) // what --big-room-threshold off gives
	join := func(room string) {
		g := make(chan error, 8)
		for w := range 8 {
			go func() {
				for i := w; i < 1000; i += 8 {
					if _, err := on.hub.Join(context.Background(), room, fmt.Sprintf("m%d", i)); err != nil {
						g <- err
						return
					}
				}
				g <- nil
			}()
		}
		for range 8 {
			must(t, <-g)
		}
	}
	join("thousand")
	m0, _ := connect(t, on, "m0")
	id := postRoom(t, on, "thousand", `"hello"`)
	next(t, m0, "room_mode")
	if m := next(t, m0, "message"); !m.Big || m.ID != id {
		t.Fatalf("got %s, want a big message %s", m.Raw, id)
	}
	// Turned off, a node sends per member, and the room turns small at its next send.
	id = postRoom(t, off, "thousand", `"small again"`)
	if f := next(t, m0, "room_mode"); f.Big {
		t.Fatalf("want the room turning small, got %s", f.Raw)
	}
	if m := next(t, m0, "message"); m.Big || m.HistoryID != id {
		t.Fatalf("got %s, want a per-member message with history id %s", m.Raw, id)
	}
}

// modeString shows how msgs arrived, in order: s per member, B big, with the history ids.
func modeString(msgs []wsclient.Frame) string {
	var b strings.Builder
	for _, m := range msgs {
		if m.Room != "" {
			fmt.Fprintf(&b, " %s:%s", map[bool]string{true: "B", false: "s"}[m.Big], m.HistoryID)
		}
	}
	return b.String()
}
