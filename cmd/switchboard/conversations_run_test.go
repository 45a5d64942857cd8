package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/internal/wsclient"
)

// TestEmbeddedRedisServesConversations runs the conversation features on the embedded
// Redis, whose Lua and stream commands are its own implementation: the sender's copy, room
// history and its frame, ephemeral sends, room presence.
func TestEmbeddedRedisServesConversations(t *testing.T) {
	p := startProcess(t, noEnv)
	alice, _ := p.dial(t, "user=alice")
	bob, _ := p.dial(t, "user=bob")
	frame := func(c *wsclient.Conn, typ string) wsclient.Frame {
		t.Helper()
		for {
			f, err := c.NextWithin(10 * time.Second)
			if err != nil {
				t.Fatalf("waiting for %s: %v", typ, err)
			}
			if f.Type == typ {
				return f
			}
		}
	}
	get := func(path string) string {
		t.Helper()
		res, err := http.Get(p.base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, res.StatusCode, b)
		}
		return string(b)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(alice.SendRaw([]byte(`{"type":"send","to":"bob","data":"hi","ref":"1"}`)))
	if a := frame(alice, "ack"); a.CopyID == "" {
		t.Fatalf("ack %s: no copy id", a.Raw)
	}
	if h := get("/v1/users/alice/messages"); !strings.Contains(h, `"to":"bob"`) {
		t.Fatalf("alice's history %s: no copy", h)
	}
	frame(bob, "message")
	must(alice.SendRaw([]byte(`{"type":"join","room":"lobby","ref":"j"}`)))
	frame(alice, "ack")
	for _, data := range []string{"1", "2", "3"} {
		must(alice.SendRaw([]byte(`{"type":"send","room":"lobby","data":` + data + `,"ref":"r"}`)))
		frame(alice, "ack")
	}
	must(alice.SendRaw([]byte(`{"type":"history","room":"lobby","limit":2,"ref":"h"}`)))
	if h := frame(alice, "history"); len(h.Messages) != 2 || !h.More || string(h.Messages[1].Data) != "3" {
		t.Fatalf("history frame %s", h.Raw)
	}
	var page struct{ Messages []wsclient.Frame }
	must(json.Unmarshal([]byte(get("/v1/rooms/lobby/messages?since=0-0")), &page))
	if len(page.Messages) != 3 {
		t.Fatalf("room history %+v", page)
	}
	must(alice.SendRaw([]byte(`{"type":"send","to":"bob","data":"typing","ephemeral":true}`)))
	if m := frame(bob, "message"); !m.Ephemeral || m.ID != "" {
		t.Fatalf("bob got %s", m.Raw)
	}
	if o := get("/v1/rooms/lobby/presence"); strings.TrimSpace(o) != `{"online":["alice"]}` {
		t.Fatalf("presence %s", o)
	}
}
