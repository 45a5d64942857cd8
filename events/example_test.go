package events_test

import (
	"encoding/json"
	"io"
	"log"
	"net/http"
	"sync"
	"time"

	"github.com/switchboard-dev/switchboard/events"
)

// A webhook receiver: check the signature over the raw body, refuse stale requests, handle
// each event once by id (delivery is at least once), and answer 2xx only once the events
// are safely handled, since anything else makes Switchboard send them again.
func ExampleVerify() {
	secret := "the --webhook-secret value"
	var mu sync.Mutex
	seen := map[string]bool{} // in production: a table with a unique key, kept for a day

	http.HandleFunc("POST /switchboard/events", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 8<<20))
		if err != nil {
			http.Error(w, "cannot read body", http.StatusBadRequest)
			return
		}
		if err := events.Verify(secret, r.Header, body, time.Now(), 5*time.Minute); err != nil {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var req struct {
			Events []events.Event `json:"events"`
		}
		if err := json.Unmarshal(body, &req); err != nil {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		for _, e := range req.Events {
			mu.Lock()
			dup := seen[e.ID]
			seen[e.ID] = true
			mu.Unlock()
			if dup {
				continue
			}
			switch e.Type {
			case events.UserOnline, events.UserOffline:
				log.Printf("%s is now %s", e.User, e.Type)
			case events.RoomJoined, events.RoomLeft:
				log.Printf("%s %s %s (by %s)", e.User, e.Type, e.Room, e.By)
			case events.ClientEvent:
				log.Printf("%s sent %s: %s", e.User, e.Name, e.Data)
			}
		}
		w.WriteHeader(http.StatusNoContent)
	})
}
