package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/client"
)

func TestEveryCallSucceeds(t *testing.T) {
	s := startServer(t)
	c := s.newClient(t)
	ctx := context.Background()
	ws := s.connect(t, "bob")

	must(t, c.AddMember(ctx, "lobby", "bob"))
	must(t, c.AddMember(ctx, "lobby", "bob")) // idempotent
	must(t, c.AddMember(ctx, "lobby", "alice"))
	members, err := c.Members(ctx, "lobby")
	must(t, err)
	slices.Sort(members)
	if !slices.Equal(members, []string{"alice", "bob"}) {
		t.Fatalf("members %v", members)
	}
	rooms, err := c.Rooms(ctx, "bob")
	must(t, err)
	if !slices.Equal(rooms, []string{"lobby"}) {
		t.Fatalf("rooms %v", rooms)
	}

	id1, err := c.SendToUser(ctx, "bob", client.JSON(map[string]int{"n": 1}), client.From("svc"))
	must(t, err)
	id2, err := c.SendToUser(ctx, "bob", client.Text("héllo"))
	must(t, err)
	id3, err := c.SendToUser(ctx, "bob", client.Bytes([]byte{0, 1, 2}))
	must(t, err)
	sent, err := c.SendToRoom(ctx, "lobby", client.RawJSON([]byte(`{"all":true}`)), client.From("system"))
	must(t, err)
	if sent.Recipients != 2 || sent.HistoryID == "" {
		t.Fatalf("room send %+v, want 2 recipients and a history id", sent)
	}
	results, err := c.SendBatch(ctx, []client.BatchItem{
		{User: "bob", Data: json.RawMessage(`"b1"`)},
		{Room: "lobby", From: "alice", Binary: []byte("b2")},
	})
	must(t, err)
	if len(results) != 2 || results[0].ID == "" || results[0].Err != nil || results[1].Recipients != 2 || results[1].Err != nil {
		t.Fatalf("batch results %+v", results)
	}
	// The live connection sees them in order.
	for _, id := range []string{id1, id2, id3} {
		if f, err := ws.NextWithin(5 * time.Second); err != nil || f.ID != id {
			t.Fatalf("frame %+v %v, want id %s", f, err, id)
		}
	}

	msgs, err := c.Messages(ctx, "bob", "", 0)
	must(t, err)
	if len(msgs) != 6 {
		t.Fatalf("%d messages, want 6: %+v", len(msgs), msgs)
	}
	want := []client.Message{
		{ID: id1, From: "svc", Data: json.RawMessage(`{"n":1}`)},
		{ID: id2, Data: json.RawMessage(`"héllo"`)},
		{ID: id3, Binary: []byte{0, 1, 2}},
		{ID: msgs[3].ID, From: "system", Room: "lobby", Data: json.RawMessage(`{"all":true}`)},
		{ID: results[0].ID, Data: json.RawMessage(`"b1"`)},
		{ID: msgs[5].ID, From: "alice", Room: "lobby", Binary: []byte("b2")},
	}
	for i, w := range want {
		m := msgs[i]
		if m.ID != w.ID || m.From != w.From || m.Room != w.Room || string(m.Data) != string(w.Data) || string(m.Binary) != string(w.Binary) {
			t.Errorf("message %d: %+v, want %+v", i, m, w)
		}
	}
	if msgs[3].HistoryID != sent.HistoryID {
		t.Errorf("bob's copy of the room message has history id %q, the send answered %q", msgs[3].HistoryID, sent.HistoryID)
	}
	// Every send carried its own Idempotency-Key (the client's default), so every message
	// its dedupe token, each a different one.
	tokens := map[string]bool{}
	for _, m := range msgs {
		if len(m.Dedupe) != 16 || tokens[m.Dedupe] {
			t.Errorf("message %s has dedupe %q, want a token of its own", m.ID, m.Dedupe)
		}
		tokens[m.Dedupe] = true
	}
	page, err := c.Messages(ctx, "bob", id2, 2)
	must(t, err)
	if len(page) != 2 || page[0].ID != id3 {
		t.Fatalf("page after %s: %+v", id2, page)
	}

	p, err := c.Presence(ctx, "bob")
	must(t, err)
	if !p.Online || p.Connections != 1 {
		t.Fatalf("presence %+v", p)
	}
	d, err := c.Disconnect(ctx, "bob", false)
	must(t, err)
	if d.Count != 1 || !d.RevokedBefore.IsZero() {
		t.Fatalf("disconnect %+v", d)
	}
	if code, _ := ws.CloseCode(); code != 4001 {
		<-ws.Done()
		if code, _ := ws.CloseCode(); code != 4001 {
			t.Fatalf("close code %d, want 4001", code)
		}
	}
	d, err = c.Disconnect(ctx, "bob", true)
	must(t, err)
	if d.Count != 0 || d.RevokedBefore.IsZero() {
		t.Fatalf("disconnect with revoke %+v", d)
	}

	must(t, c.RemoveMember(ctx, "lobby", "bob"))
	must(t, c.RemoveMember(ctx, "lobby", "bob")) // idempotent
	members, err = c.Members(ctx, "lobby")
	must(t, err)
	if !slices.Equal(members, []string{"alice"}) {
		t.Fatalf("members after removal %v", members)
	}
}

func TestRefusalsAreTypedErrors(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	good := s.newClient(t)
	wrongKey := s.newClient(t, client.WithAPIKey("nope"))
	noKey, err := client.New(s.base)
	must(t, err)
	prefixed, err := client.New(s.base+"/not-here/", client.WithAPIKey(apiKey))
	must(t, err)
	must(t, good.AddMember(ctx, "first", "bob"))
	big := strings.Repeat("x", 65)

	type call func(*client.Client) error
	send := func(user string, p client.Payload) call {
		return func(c *client.Client) error { _, err := c.SendToUser(ctx, user, p); return err }
	}
	room := func(r string, p client.Payload, opts ...client.SendOption) call {
		return func(c *client.Client) error { _, err := c.SendToRoom(ctx, r, p, opts...); return err }
	}
	batch := func(items ...client.BatchItem) call {
		return func(c *client.Client) error { _, err := c.SendBatch(ctx, items); return err }
	}
	history := func(user, since string, limit int) call {
		return func(c *client.Client) error { _, err := c.Messages(ctx, user, since, limit); return err }
	}
	presence := func(user string) call {
		return func(c *client.Client) error { _, err := c.Presence(ctx, user); return err }
	}
	rooms := func(user string) call {
		return func(c *client.Client) error { _, err := c.Rooms(ctx, user); return err }
	}
	members := func(r string) call { return func(c *client.Client) error { _, err := c.Members(ctx, r); return err } }
	add := func(r, u string) call { return func(c *client.Client) error { return c.AddMember(ctx, r, u) } }
	remove := func(r, u string) call { return func(c *client.Client) error { return c.RemoveMember(ctx, r, u) } }
	disconnect := func(u string) call {
		return func(c *client.Client) error { _, err := c.Disconnect(ctx, u, false); return err }
	}
	every := map[string]call{
		"send": send("bob", client.Text("x")), "room": room("lobby", client.Text("x")),
		"batch":   batch(client.BatchItem{User: "bob", Data: json.RawMessage(`1`)}),
		"history": history("bob", "", 0), "presence": presence("bob"), "rooms": rooms("bob"),
		"members": members("lobby"), "add": add("lobby", "bob"), "remove": remove("lobby", "bob"),
		"disconnect": disconnect("bob"),
	}
	type refusal struct {
		name   string
		c      *client.Client
		call   call
		status int
		code   string
	}
	cases := []refusal{
		{"a batch item without data", good, batch(client.BatchItem{User: "bob"}), 400, client.CodeBadRequest},
		{"bad JSON", good, send("bob", client.RawJSON([]byte(`{"a":`))), 400, client.CodeBadJSON},
		{"a bad sender", good, room("lobby", client.Text("x"), client.From("a b")), 400, client.CodeInvalidID},
		{"a bad since", good, history("bob", "yesterday", 0), 400, client.CodeBadRequest},
		{"a limit over 1000", good, history("bob", "", 1001), 400, client.CodeBadRequest},
		{"a payload over the limit", good, send("bob", client.Text(big)), 413, client.CodeTooLarge},
		{"a room payload over the limit", good, room("lobby", client.Bytes([]byte(big))), 413, client.CodeTooLarge},
		{"a batch item over the limit", good, batch(client.BatchItem{Room: "lobby", Binary: []byte(big)}), 413, client.CodeTooLarge},
		{"a second room over the quota", good, add("second", "bob"), 429, client.CodeQuotaExceeded},
		{"a path the server does not have", prefixed, presence("bob"), 404, client.CodeNotFound},
	}
	for name, fn := range every {
		cases = append(cases,
			refusal{name + " with a wrong key", wrongKey, fn, 401, client.CodeUnauthorized},
			refusal{name + " without a key", noKey, fn, 401, client.CodeUnauthorized})
	}
	// Every call refuses an id outside the pattern; a slash cannot reach another endpoint.
	for name, fn := range map[string]call{
		"send": send("a/b", client.Text("x")), "room": room("a b", client.Text("x")),
		"batch":   batch(client.BatchItem{User: "a b", Data: json.RawMessage(`1`)}),
		"history": history("a/../b", "", 0), "presence": presence("é"), "rooms": rooms("a?b"),
		"members": members(strings.Repeat("r", 129)), "add": add("lobby", "a#b"),
		"remove": remove("a b", "bob"), "disconnect": disconnect("a%b"),
	} {
		cases = append(cases, refusal{name + " with a bad id", good, fn, 400, client.CodeInvalidID})
	}
	for _, tc := range cases {
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
	// None of the refused sends was stored.
	msgs, err := good.Messages(ctx, "bob", "", 0)
	must(t, err)
	if len(msgs) != 0 {
		t.Fatalf("refused sends stored %+v", msgs)
	}
}

func TestPayloadEncodingErrorSendsNothing(t *testing.T) {
	var tr counter
	c, err := client.New("http://127.0.0.1:1", client.WithHTTPClient(&http.Client{Transport: &tr}))
	must(t, err)
	if _, err := c.SendToUser(context.Background(), "bob", client.JSON(make(chan int))); err == nil {
		t.Fatal("an unencodable payload was accepted")
	}
	if n := tr.take(); len(n) != 0 {
		t.Fatalf("requests were sent: %v", n)
	}
}

func TestNewRefusesBadBaseURLs(t *testing.T) {
	for _, u := range []string{"", "ftp://x", "127.0.0.1:8080", "http://", "http://h/?q=1", "http://u:p@h"} {
		if _, err := client.New(u); err == nil {
			t.Errorf("New(%q) accepted", u)
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
