package subscriptions

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"testing"

	"github.com/switchboard-dev/switchboard/internal/redistest"
)

// A room's history is read in chunks of historyChunk entries: pages longer than a chunk,
// pages cut by their byte bound past a chunk's end, and pages before and after an id all
// hold exactly the messages they should, oldest first; a member's read checks membership.
func TestRoomHistoryPagesAcrossChunks(t *testing.T) {
	h := startHub(t, redistest.Start(t))
	ctx := context.Background()
	if _, err := h.Join(ctx, "r", "alice"); err != nil {
		t.Fatal(err)
	}
	const total = 150
	ids := make([]StreamID, total)
	for i := range total {
		res, err := h.PublishRoomMessage(ctx, "r", Envelope{From: "alice", Data: []byte(`{"n":` + strconv.Itoa(i) + `}`)}, RoomSend{})
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = res.HistoryID
	}
	check := func(name string, q HistoryQuery, from, to int, more bool) HistoryPage {
		t.Helper()
		page, err := h.RoomHistory(ctx, "r", q)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(page.Messages) != to-from || page.More != more {
			t.Fatalf("%s: %d messages, more %v; want %d (%d to %d), more %v", name, len(page.Messages), page.More, to-from, from, to, more)
		}
		for i, m := range page.Messages {
			if m.ID != ids[from+i] || !bytes.Contains(m.Payload, []byte(`{"n":`+strconv.Itoa(from+i)+`}`)) {
				t.Fatalf("%s: message %d is %s %s, want %s (n %d)", name, i, m.ID, m.Payload, ids[from+i], from+i)
			}
		}
		return page
	}
	check("newest 100", HistoryQuery{Limit: 100}, 50, 150, true)
	check("all, oldest first", HistoryQuery{Limit: 1000, Forward: true}, 0, 150, false)
	check("80 before the 100th", HistoryQuery{Limit: 80, Before: ids[100]}, 20, 100, true)
	check("after the 10th", HistoryQuery{Limit: 1000, Since: ids[10]}, 11, 150, false)
	check("exactly what is left", HistoryQuery{Limit: 20, Before: ids[20]}, 0, 20, false)
	check("a member's read", HistoryQuery{Limit: 5, Member: "alice"}, 145, 150, true)

	// A byte bound that 70 envelopes fit and a 71st does not ends the page in the second
	// chunk, oldest first.
	page := check("70 fit", HistoryQuery{Limit: 1000, Forward: true}, 0, 150, false)
	budget := 0
	for _, m := range page.Messages[:70] {
		budget += len(m.Payload) - len(envelopePrefix) - len(m.ID.String()) - 1 // its tail
	}
	check("bounded by bytes", HistoryQuery{Limit: 1000, Forward: true, MaxBytes: budget}, 0, 70, true)
	check("one message over the bound still comes", HistoryQuery{Limit: 10, Forward: true, MaxBytes: 1}, 0, 1, true)

	if _, err := h.RoomHistory(ctx, "r", HistoryQuery{Limit: 5, Member: "mallory"}); !errors.Is(err, ErrNotMember) {
		t.Fatalf("a non-member's read: %v, want ErrNotMember", err)
	}
	if _, err := h.RoomHistory(ctx, "no room", HistoryQuery{Limit: 5}); !errors.Is(err, ErrInvalidID) {
		t.Fatalf("a bad room: %v, want ErrInvalidID", err)
	}
}
