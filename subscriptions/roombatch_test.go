package subscriptions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/internal/redistest"
	"github.com/switchboard-dev/switchboard/internal/testutil"
)

// Concurrent sends of a room are delivered in batches (roombatch.go): each must still get
// its own history id and recipient count, every member must get every message once, all
// members in the same order, the room's history in that order too, and a refused sender
// must not fail the others. A room of one group and one of several (the room stream
// appended by a call of its own) take different paths.
func TestConcurrentRoomSendsKeepOneOrderAndTheirOwnResults(t *testing.T) {
	srv := redistest.Start(t)
	h := startHub(t, srv, func(c *Config) { c.RoomHistorySize = 1000 })
	ctx := context.Background()
	for _, size := range []int{3, 150} {
		t.Run(fmt.Sprint(size, " members"), func(t *testing.T) {
			room := fmt.Sprint("batch", size)
			watched := []string{fmt.Sprint(room, "-u0"), fmt.Sprint(room, "-u", size-1)}
			sinks := []*sink{{}, {}}
			for i, u := range watched {
				subscribe(t, h, u, "", sinks[i])
			}
			for i := range size {
				if _, err := h.Join(ctx, room, fmt.Sprint(room, "-u", i)); err != nil {
					t.Fatal(err)
				}
			}
			const sends = 40
			results := make([]RoomResult, sends)
			errs := make([]error, sends)
			var refused error
			var wg sync.WaitGroup
			for i := range sends {
				wg.Go(func() {
					results[i], errs[i] = h.PublishRoomMessage(ctx, room, Envelope{From: watched[0], Data: fmt.Appendf(nil, "%d", i)}, RoomSend{RequireMember: true})
				})
			}
			wg.Go(func() {
				_, refused = h.PublishRoomMessage(ctx, room, Envelope{From: "stranger", Data: []byte(`-1`)}, RoomSend{RequireMember: true})
			})
			wg.Wait()
			if !errors.Is(refused, ErrNotMember) {
				t.Fatalf("a stranger's send answered %v, want ErrNotMember", refused)
			}
			seen := map[StreamID]bool{}
			for i := range sends {
				if errs[i] != nil || results[i].Recipients != size || results[i].HistoryID.IsZero() || seen[results[i].HistoryID] {
					t.Fatalf("send %d: %+v, %v: want %d recipients and a history id of its own", i, results[i], errs[i], size)
				}
				seen[results[i].HistoryID] = true
			}
			for i := range sinks {
				testutil.WaitFor(t, 5*time.Second, func() bool { return sinks[i].count() >= sends }, "every message")
			}
			a, _ := sinks[0].snapshot()
			b, _ := sinks[1].snapshot()
			if len(a) != sends || len(b) != sends {
				t.Fatalf("delivered %d and %d messages, want %d each", len(a), len(b), sends)
			}
			hist, err := h.rdb.XRange(ctx, h.keys.roomHistory(room), "-", "+").Result()
			if err != nil || len(hist) != sends {
				t.Fatalf("room history: %d entries, %v; want %d", len(hist), err, sends)
			}
			for i := range sends {
				if !dataOf(t, a[i]).equal(dataOf(t, b[i])) || dataOf(t, a[i]).history != hist[i].ID {
					t.Fatalf("message %d: %s and %s, room history %s: members disagree on the order", i, a[i].Payload, b[i].Payload, hist[i].ID)
				}
				if i > 0 && !a[i-1].ID.Less(a[i].ID) {
					t.Fatalf("message %d: id %v not after %v", i, a[i].ID, a[i-1].ID)
				}
			}
		})
	}
}

type delivered struct{ data, history string }

func (d delivered) equal(o delivered) bool { return d == o }

// dataOf reads the data and history id of a delivered envelope.
func dataOf(t *testing.T, m Message) delivered {
	t.Helper()
	var env struct {
		Data      json.RawMessage `json:"data"`
		HistoryID string          `json:"history_id"`
	}
	if err := json.Unmarshal(m.Payload, &env); err != nil {
		t.Fatalf("%s: %v", m.Payload, err)
	}
	return delivered{string(env.Data), env.HistoryID}
}

func TestBatchLimitKeepsHugeRoomsToOneSendPerFanOut(t *testing.T) {
	for members, want := range map[int]int{0: 8, 1: 8, 100: 8, 1000: 8, 1024: 8, 2000: 4, 8192: 1, 100000: 1} {
		if got := batchLimit(members); got != want {
			t.Errorf("batchLimit(%d) = %d, want %d", members, got, want)
		}
	}
}
