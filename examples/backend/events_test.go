package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/events"
)

// batch builds an event request body as Switchboard encodes it (events.Event's JSON).
func batch(t *testing.T, evs ...events.Event) []byte {
	t.Helper()
	return mustJSON(t, map[string]any{"events": evs})
}

// handledIDs returns the ids of the events the backend handled, in order.
func handledIDs(t *testing.T, f *fixture) []string {
	var ids []string
	for _, rec := range f.log.records(t, "event") {
		ids = append(ids, fmt.Sprint(rec["id"]))
	}
	return ids
}

func TestEventsAreHandledOnceByID(t *testing.T) {
	f := newFixture(t)
	at := f.now.Add(-time.Second)
	e1 := events.Event{ID: "e1", Type: events.UserOnline, User: "alice", Node: "n1", Time: at}
	e2 := events.Event{ID: "e2", Type: events.RoomJoined, User: "alice", Node: "n1", Time: at, Room: "public.lobby", By: events.ByClient}
	e3 := events.Event{ID: "e3", Type: events.ClientEvent, User: "alice", Node: "n1", Time: at, Name: "order.paid", Data: json.RawMessage(`{"order":42}`)}

	wantStatus(t, f.post("/events", string(batch(t, e1, e2))), http.StatusNoContent)
	// A retry of part of the batch (at-least-once delivery) with a new event.
	wantStatus(t, f.post("/events", string(batch(t, e2, e3, e2))), http.StatusNoContent)
	wantStatus(t, f.post("/events", string(batch(t))), http.StatusNoContent)

	if got, want := handledIDs(t, f), []string{"e1", "e2", "e3"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("handled %v, want %v", got, want)
	}
	recs := f.log.records(t, "event")
	if recs[1]["room"] != "public.lobby" || recs[1]["by"] != "client" {
		t.Errorf("room.joined logged as %v", recs[1])
	}
	if recs[2]["name"] != "order.paid" || recs[2]["data_bytes"] != float64(len(`{"order":42}`)) {
		t.Errorf("client.event logged as %v", recs[2])
	}
	if _, logged := recs[2]["data"]; logged {
		t.Errorf("a client's data was logged: %v", recs[2])
	}
	if n := len(f.log.records(t, "duplicate event skipped")); n != 2 {
		t.Errorf("%d duplicates reported, want 2", n)
	}
}

func TestEventBatchThatIsNotJSONIsRefused(t *testing.T) {
	f := newFixture(t)
	for _, body := range []string{`{"events":[`, `{"events":{}}`, `{"events":[{"id":"x","time":"yesterday"}]}`} {
		wantStatus(t, f.post("/events", body), http.StatusBadRequest)
	}
	if ids := handledIDs(t, f); len(ids) != 0 {
		t.Fatalf("handled %v from malformed batches", ids)
	}
}

func TestDedupeForgetsTheOldestBeyondItsSize(t *testing.T) {
	d := newDedupe(3)
	for _, id := range []string{"a", "b", "c"} {
		if !d.add(id) {
			t.Fatalf("%s reported as seen before it was added", id)
		}
	}
	for _, id := range []string{"a", "b", "c"} {
		if d.add(id) {
			t.Fatalf("%s not remembered", id)
		}
	}
	if !d.add("d") { // evicts a
		t.Fatal("d reported as seen")
	}
	if len(d.ids) != 3 {
		t.Fatalf("%d ids held, want at most 3", len(d.ids))
	}
	if d.add("c") || d.add("d") {
		t.Fatal("a recent id was forgotten")
	}
	if !d.add("a") {
		t.Fatal("the oldest id was not forgotten")
	}
}
