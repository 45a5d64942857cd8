package client_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/client"
)

func TestRoomHistoryPages(t *testing.T) {
	s := startServer(t)
	c := s.newClient(t)
	ctx := context.Background()
	must(t, c.AddMember(ctx, "lobby", "bob"))
	must(t, c.AddMember(ctx, "lobby", "alice"))

	var ids []string
	for i := range 5 {
		sent, err := c.SendToRoom(ctx, "lobby", client.JSON(i), client.From("alice"))
		must(t, err)
		if sent.Recipients != 2 || sent.HistoryID == "" {
			t.Fatalf("send %d: %+v", i, sent)
		}
		ids = append(ids, sent.HistoryID)
	}
	pageIDs := func(p client.RoomPage) []string {
		var out []string
		for _, m := range p.Messages {
			out = append(out, m.ID)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		q    client.RoomQuery
		want []string
		more bool
	}{
		{"all", client.RoomQuery{}, ids, false},
		{"the oldest two", client.RoomQuery{Limit: 2}, ids[:2], true},
		{"after the second", client.RoomQuery{Since: ids[1]}, ids[2:], false},
		{"after the second, two", client.RoomQuery{Since: ids[1], Limit: 2}, ids[2:4], true},
		{"the newest two", client.RoomQuery{Before: "99999999999999-0", Limit: 2}, ids[3:], true},
		{"two before the fourth", client.RoomQuery{Before: ids[3], Limit: 2}, ids[1:3], true},
		{"before the second", client.RoomQuery{Before: ids[1]}, ids[:1], false},
		{"after the last", client.RoomQuery{Since: ids[4]}, nil, false},
	} {
		p, err := c.RoomMessages(ctx, "lobby", tc.q)
		must(t, err)
		if got := pageIDs(p); !slices.Equal(got, tc.want) || p.More != tc.more {
			t.Errorf("%s: %v more=%v, want %v more=%v", tc.name, got, p.More, tc.want, tc.more)
		}
	}
	p, err := c.RoomMessages(ctx, "lobby", client.RoomQuery{Limit: 1})
	must(t, err)
	if m := p.Messages[0]; m.From != "alice" || m.Room != "lobby" || string(m.Data) != "0" {
		t.Errorf("first message %+v", m)
	}
	p, err = c.RoomMessages(ctx, "nowhere", client.RoomQuery{})
	must(t, err)
	if len(p.Messages) != 0 || p.More {
		t.Errorf("an unknown room's history: %+v", p)
	}
	// A member's own copy carries the room's id.
	msgs, err := c.Messages(ctx, "bob", "", 0)
	must(t, err)
	if len(msgs) != 5 {
		t.Fatalf("bob has %d messages, want 5", len(msgs))
	}
	for i, m := range msgs {
		if m.HistoryID != ids[i] {
			t.Errorf("bob's message %d has history id %q, want %q", i, m.HistoryID, ids[i])
		}
	}
}

func TestRoomPresence(t *testing.T) {
	s := startServer(t)
	c := s.newClient(t)
	ctx := context.Background()
	for _, u := range []string{"carol", "bob", "alice"} {
		must(t, c.AddMember(ctx, "lobby", u))
	}
	online, err := c.RoomPresence(ctx, "lobby")
	must(t, err)
	if len(online) != 0 {
		t.Fatalf("online before anyone connected: %v", online)
	}
	s.connect(t, "carol")
	s.connect(t, "alice")
	s.connect(t, "dave") // connected, not a member
	online, err = c.RoomPresence(ctx, "lobby")
	must(t, err)
	if !slices.Equal(online, []string{"alice", "carol"}) {
		t.Fatalf("online %v, want [alice carol]", online)
	}
	online, err = c.RoomPresence(ctx, "nowhere")
	must(t, err)
	if online == nil || len(online) != 0 {
		t.Fatalf("an unknown room's presence: %#v, want an empty list", online)
	}
}

func TestEphemeralSends(t *testing.T) {
	s := startServer(t)
	c := s.newClient(t)
	ctx := context.Background()
	must(t, c.AddMember(ctx, "lobby", "bob"))
	must(t, c.AddMember(ctx, "lobby", "alice"))
	ws := s.connect(t, "bob")

	id, err := c.SendToUser(ctx, "bob", client.JSON(map[string]bool{"typing": true}), client.Ephemeral(), client.From("alice"))
	must(t, err)
	if id != "" {
		t.Fatalf("an ephemeral send answered id %q", id)
	}
	sent, err := c.SendToRoom(ctx, "lobby", client.Text("cursor"), client.Ephemeral())
	must(t, err)
	if sent.Recipients != 2 || sent.HistoryID != "" {
		t.Fatalf("ephemeral room send %+v, want 2 recipients and no history id", sent)
	}
	for _, want := range []struct{ from, room, data string }{{"alice", "", `{"typing":true}`}, {"", "lobby", `"cursor"`}} {
		f, err := ws.NextWithin(5 * time.Second)
		if err != nil || f.Type != "message" || !f.Ephemeral || f.ID != "" || f.From != want.from || f.Room != want.room || string(f.Data) != want.data {
			t.Fatalf("frame %+v %v, want an ephemeral message %+v", f, err, want)
		}
	}
	// Nothing kept them: not bob's stream, not the room's.
	msgs, err := c.Messages(ctx, "bob", "", 0)
	must(t, err)
	page, err := c.RoomMessages(ctx, "lobby", client.RoomQuery{})
	must(t, err)
	if len(msgs) != 0 || len(page.Messages) != 0 {
		t.Fatalf("ephemeral sends stored: user %+v, room %+v", msgs, page.Messages)
	}
	// A stored send after them still is, and arrives next: nothing was lost in between.
	id, err = c.SendToUser(ctx, "bob", client.JSON(1))
	must(t, err)
	if f, err := ws.NextWithin(5 * time.Second); err != nil || f.ID != id || f.Ephemeral {
		t.Fatalf("frame %+v %v, want the stored message %s", f, err, id)
	}
}

func TestConversationRefusals(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	good := s.newClient(t)
	wrongKey := s.newClient(t, client.WithAPIKey("nope"))
	must(t, good.AddMember(ctx, "lobby", "bob"))
	big := strings.Repeat("x", 65)

	type call func(*client.Client) error
	history := func(room string, q client.RoomQuery) call {
		return func(c *client.Client) error { _, err := c.RoomMessages(ctx, room, q); return err }
	}
	presence := func(room string) call {
		return func(c *client.Client) error { _, err := c.RoomPresence(ctx, room); return err }
	}
	dm := func(user string, p client.Payload) call {
		return func(c *client.Client) error { _, err := c.SendToUser(ctx, user, p, client.Ephemeral()); return err }
	}
	room := func(r string, p client.Payload, opts ...client.SendOption) call {
		return func(c *client.Client) error {
			_, err := c.SendToRoom(ctx, r, p, append([]client.SendOption{client.Ephemeral()}, opts...)...)
			return err
		}
	}
	for _, tc := range []struct {
		name   string
		c      *client.Client
		call   call
		status int
		code   string
	}{
		{"since and before", good, history("lobby", client.RoomQuery{Since: "1-0", Before: "2-0"}), 400, client.CodeBadRequest},
		{"a bad since", good, history("lobby", client.RoomQuery{Since: "yesterday"}), 400, client.CodeBadRequest},
		{"a bad before", good, history("lobby", client.RoomQuery{Before: "soon"}), 400, client.CodeBadRequest},
		{"a limit over 1000", good, history("lobby", client.RoomQuery{Limit: client.MaxMessagesLimit + 1}), 400, client.CodeBadRequest},
		{"a negative limit", good, history("lobby", client.RoomQuery{Limit: -1}), 400, client.CodeBadRequest},
		{"history of a bad room", good, history("a/b", client.RoomQuery{}), 400, client.CodeInvalidID},
		{"presence of a bad room", good, presence("a b"), 400, client.CodeInvalidID},
		{"history with a wrong key", wrongKey, history("lobby", client.RoomQuery{}), 401, client.CodeUnauthorized},
		{"presence with a wrong key", wrongKey, presence("lobby"), 401, client.CodeUnauthorized},
		{"an ephemeral DM with a wrong key", wrongKey, dm("bob", client.Text("x")), 401, client.CodeUnauthorized},
		{"an ephemeral DM to a bad id", good, dm("a/b", client.Text("x")), 400, client.CodeInvalidID},
		{"an ephemeral DM of bad JSON", good, dm("bob", client.RawJSON([]byte(`{`))), 400, client.CodeBadJSON},
		{"an ephemeral DM over the limit", good, dm("bob", client.Text(big)), 413, client.CodeTooLarge},
		{"an ephemeral room send over the limit", good, room("lobby", client.Bytes([]byte(big))), 413, client.CodeTooLarge},
		{"an ephemeral room send from a bad id", good, room("lobby", client.Text("x"), client.From("a b")), 400, client.CodeInvalidID},
		{"an ephemeral room send with a wrong key", wrongKey, room("lobby", client.Text("x")), 401, client.CodeUnauthorized},
	} {
		err := tc.call(tc.c)
		var e *client.Error
		if !errors.As(err, &e) {
			t.Errorf("%s: %v, want a *client.Error", tc.name, err)
			continue
		}
		if e.Status != tc.status || e.Code != tc.code || e.Message == "" {
			t.Errorf("%s: %d %q %q, want %d %s", tc.name, e.Status, e.Code, e.Message, tc.status, tc.code)
		}
	}
}
