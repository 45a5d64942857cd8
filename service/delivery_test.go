package service_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/internal/testutil"
	"github.com/switchboard-dev/switchboard/internal/wsclient"
	"github.com/switchboard-dev/switchboard/subscriptions"
)

func testDirectMessagePostedToOneNodeReachesUserOnAnother(t *testing.T, be backend) {
	a := startNode(t, be, "a")
	b := startNode(t, be, "b")
	alice, w := connect(t, a, "alice")
	if w.User != "alice" || w.Node != "a" || w.Recovered != nil {
		t.Fatalf("welcome: %s", w.Raw)
	}

	id := sendDM(t, b, "alice", `{"text":"hi"}`)
	m := next(t, alice, "message")
	if m.ID != id || string(m.Data) != `{"text":"hi"}` || m.From != "" || m.Room != "" {
		t.Fatalf("got %s, want id %s with data {\"text\":\"hi\"}", m.Raw, id)
	}
}

func testPayloadFormsArriveAsDataOrBase64(t *testing.T, be backend) {
	a := startNode(t, be, "a")
	bob, _ := connect(t, a, "bob")
	binary := []byte{0, 1, 2, 255, 'x'}
	cases := []struct {
		name, contentType, body string
		wantData, wantB64       string
	}{
		{"json object", "application/json", `{"n":1}`, `{"n":1}`, ""},
		{"json with charset", "application/json; charset=utf-8", `[1,2]`, `[1,2]`, ""},
		{"vendor json", "application/vnd.x+json", `"s"`, `"s"`, ""},
		{"text", "text/plain", "héllo \"world\"", `"héllo \"world\""`, ""},
		{"no content type", "", string(binary), "", base64.StdEncoding.EncodeToString(binary)},
		{"octet stream", "application/octet-stream", "abc", "", "YWJj"},
		{"empty binary", "application/octet-stream", "", "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, "POST", a.base+"/v1/users/bob/messages?from=svc.billing", tc.contentType, strings.NewReader(tc.body))
			if r.status != http.StatusAccepted {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			m := next(t, bob, "message")
			if m.From != "svc.billing" || string(m.Data) != tc.wantData || m.DataB64 != tc.wantB64 {
				t.Fatalf("got %s", m.Raw)
			}
			if tc.wantB64 == "" && tc.wantData == "" && !strings.Contains(string(m.Raw), `"data_b64":""`) {
				t.Fatalf("empty binary payload should arrive as data_b64:\"\": %s", m.Raw)
			}
		})
	}
}

func testUserWithDevicesOnTwoNodesGetsEachMessageOnceOnEach(t *testing.T, be backend) {
	a := startNode(t, be, "a")
	b := startNode(t, be, "b")
	phone, _ := connect(t, a, "bob")
	laptop, _ := connect(t, b, "bob")
	tablet, _ := connect(t, b, "bob")

	const n = 50
	ids := make([]string, n)
	for i := range ids {
		node := a
		if i%2 == 1 {
			node = b
		}
		ids[i] = sendDM(t, node, "bob", fmt.Sprintf(`{"i":%d}`, i))
	}
	for name, c := range map[string]*wsclient.Conn{"phone": phone, "laptop": laptop, "tablet": tablet} {
		for i := range n {
			m := next(t, c, "message")
			if m.ID != ids[i] || string(m.Data) != fmt.Sprintf(`{"i":%d}`, i) {
				t.Fatalf("%s: message %d: got %s, want id %s", name, i, m.Raw, ids[i])
			}
		}
		noFrame(t, c, 100*time.Millisecond)
	}
}

func TestNodeUnsubscribesWhenUsersLastConnectionCloses(t *testing.T) {
	srv, rdb := startRedis(t)
	a := startNode(t, onRedis(srv), "a")
	c1, _ := connect(t, a, "carol")
	c2, _ := connect(t, a, "carol")
	if got := numsub(t, rdb, "carol"); got != 1 {
		t.Fatalf("two local connections of one user: NUMSUB %d, want 1 (one shared subscription)", got)
	}
	stats := a.hub.Stats()
	if stats.Users != 1 || stats.Connections != 2 || len(stats.Channels) != 1 || stats.Channels[0].Connections != 2 {
		t.Fatalf("stats: %+v", stats)
	}
	c1.Close()
	testutil.WaitFor(t, 5*time.Second, func() bool { return a.hub.Stats().Connections == 1 }, "first close to be seen")
	if got := numsub(t, rdb, "carol"); got != 1 {
		t.Fatalf("after the first of two connections closed: NUMSUB %d, want 1", got)
	}
	// The remaining connection still gets messages.
	id := sendDM(t, a, "carol", `1`)
	if m := next(t, c2, "message"); m.ID != id {
		t.Fatalf("got %s", m.Raw)
	}
	c2.Close()
	testutil.WaitFor(t, 5*time.Second, func() bool { return numsub(t, rdb, "carol") == 0 }, "NUMSUB of carol's channel to drop to 0")
	testutil.WaitFor(t, 5*time.Second, func() bool { return a.hub.Stats().Users == 0 }, "the node to forget carol")
}

func testClientSendsDirectMessageAndGetsAck(t *testing.T, be backend) {
	a := startNode(t, be, "a")
	b := startNode(t, be, "b")
	alice, _ := connect(t, a, "alice")
	bob, _ := connect(t, b, "bob")

	must(t, alice.SendRaw([]byte(`{"type":"send","to":"bob","data":{"text":"hi bob"},"ref":"7"}`)))
	ack := next(t, alice, "ack")
	if ack.Ref != "7" || ack.ID == "" {
		t.Fatalf("ack: %s", ack.Raw)
	}
	m := next(t, bob, "message")
	if m.ID != ack.ID || m.From != "alice" || string(m.Data) != `{"text":"hi bob"}` {
		t.Fatalf("bob got %s", m.Raw)
	}
	// Without a ref the ack has none.
	must(t, alice.SendRaw([]byte(`{"type":"send","to":"bob","data":null}`)))
	if ack := next(t, alice, "ack"); ack.Ref != "" || ack.ID == "" {
		t.Fatalf("ack: %s", ack.Raw)
	}
	if m := next(t, bob, "message"); string(m.Data) != "null" {
		t.Fatalf("bob got %s", m.Raw)
	}
}

func TestAdminSubscriptionsListsThisNodesUsers(t *testing.T) {
	srv, _ := startRedis(t)
	a := startNode(t, onRedis(srv), "a")
	b := startNode(t, onRedis(srv), "b")
	connect(t, a, "alice")
	connect(t, a, "alice")
	connect(t, a, "bob")
	connect(t, b, "zed")

	r := do(t, "GET", a.base+"/admin/subscriptions", "", nil)
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	want := `{"node":"a","channels":[{"user":"alice","channel":"` + subscriptions.ChannelName("t", "alice") + `","connections":2},` +
		`{"user":"bob","channel":"` + subscriptions.ChannelName("t", "bob") + `","connections":1}],"connections":3,"users":2,"pubsub_reconnects":0,"caught_up":0,"replayed":0}`
	if strings.TrimSpace(string(r.body)) != want {
		t.Fatalf("got  %s\nwant %s", r.body, want)
	}
}

// An envelope that is not valid UTF-8 can only come from something else writing to Redis
// (the API refuses such payloads). Sent as a text frame it would make a browser fail the
// connection, and the client would resume into it forever: the node does not take it for a
// message, and the connection goes on with what follows.
func TestAnEnvelopeWithInvalidUTF8FromRedisIsSkipped(t *testing.T) {
	srv, rdb := startRedis(t)
	n := startNode(t, onRedis(srv), "a")
	bob, _ := connect(t, n, "bob")
	bad := fmt.Sprintf(`{"type":"message","id":"%d-0","data":"caf`+"\xe9"+`"}`, time.Now().UnixMilli()-1000)
	if err := rdb.Publish(context.Background(), subscriptions.ChannelName("t", "bob"), bad).Err(); err != nil {
		t.Fatal(err)
	}
	id := sendDM(t, n, "bob", `{"after":"the bad one"}`)
	// The test client checks UTF-8 too: had the node sent the bad frame, this read fails.
	if m := next(t, bob, "message"); m.ID != id {
		t.Fatalf("bob got %s, want the message %s sent after the bad one", m.Raw, id)
	}
}
