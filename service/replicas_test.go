package service_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/internal/redistest"
	"github.com/switchboard-dev/switchboard/internal/testutil"
	"github.com/switchboard-dev/switchboard/internal/wsclient"
	"github.com/switchboard-dev/switchboard/subscriptions"
)

// TestWaitReplicasAcksOnlyReplicatedMessagesAndSaysWhenNot: with --wait-replicas 1 an
// accepted message is on the replica when the answer comes; with the replica gone the
// message is still delivered, and the answer says "replicated":false after the timeout.
func TestWaitReplicasAcksOnlyReplicatedMessagesAndSaysWhenNot(t *testing.T) {
	master := redistest.Start(t)
	replica := redistest.StartReplica(t, master)
	const timeout = 300 * time.Millisecond
	a := startNode(t, onRedis(master), "a", func(o *nodeOptions) {
		o.subscriptions.WaitReplicas, o.subscriptions.WaitReplicasTimeout = 1, timeout
	})
	bob, _ := connect(t, a, "bob")
	alice, _ := connect(t, a, "alice")
	putMember(t, a, "lobby", "bob")
	onReplica := replica.Client(t)
	stream := func(id string) bool {
		tag, _, _ := strings.Cut(subscriptions.ChannelName("t", "bob"), "}")
		msgs, err := onReplica.XRange(context.Background(), tag+"}:stream:bob", id, id).Result()
		must(t, err)
		return len(msgs) == 1
	}

	r := post(t, a.base+"/v1/users/bob/messages", `"one"`, "")
	if r.status != http.StatusAccepted || strings.Contains(string(r.body), "replicated") {
		t.Fatalf("with the replica up: %d %s", r.status, r.body)
	}
	id := r.json(t)["id"].(string)
	if !stream(id) { // no waiting: the answer came after the replica had it
		t.Fatalf("message %s answered but not on the replica", id)
	}
	next(t, bob, "message")
	b := post(t, a.base+"/v1/messages", `{"messages":[{"user":"bob","data":"two"}]}`, "")
	if b.status != http.StatusAccepted || strings.Contains(string(b.body), "replicated") {
		t.Fatalf("a batch with the replica up: %d %s", b.status, b.body)
	}
	next(t, bob, "message")
	if r := post(t, a.base+"/v1/rooms/lobby/messages", `"hi all"`, ""); r.status != http.StatusAccepted || strings.Contains(string(r.body), "replicated") {
		t.Fatalf("a room send with the replica up: %d %s", r.status, r.body)
	}
	next(t, bob, "message")
	must(t, alice.SendRaw([]byte(`{"type":"send","to":"bob","data":"ws one","ref":"w1"}`)))
	if ack, _ := ackAndCopy(t, alice); ack.ID == "" || strings.Contains(string(ack.Raw), "replicated") || !stream(ack.ID) {
		t.Fatalf("a WebSocket DM with the replica up: ack %s (on the replica: %v)", ack.Raw, stream(ack.ID))
	}
	next(t, bob, "message")

	replica.Stop()
	testutil.WaitFor(t, 10*time.Second, func() bool { return master.OnlineReplicas(t) == 0 }, "the master sees its replica gone")
	start := time.Now()
	r = post(t, a.base+"/v1/users/bob/messages", `"three"`, "")
	if r.status != http.StatusAccepted || r.json(t)["replicated"] != false || r.json(t)["id"] == nil {
		t.Fatalf("with the replica down: %d %s", r.status, r.body)
	}
	if took := time.Since(start); took < timeout {
		t.Fatalf("answered in %v, before the wait's %v timeout", took, timeout)
	}
	if m := next(t, bob, "message"); string(m.Data) != `"three"` || m.ID != r.json(t)["id"] {
		t.Fatalf("bob got %s", m.Raw)
	}
	b = post(t, a.base+"/v1/messages", `{"messages":[{"user":"bob","data":"four"},{"user":"carol","data":"five"}]}`, "")
	var ans struct {
		Results []struct {
			ID         string
			Replicated *bool
		}
	}
	must(t, json.Unmarshal(b.body, &ans))
	if b.status != http.StatusAccepted || len(ans.Results) != 2 {
		t.Fatalf("a batch with the replica down: %d %s", b.status, b.body)
	}
	for _, res := range ans.Results {
		if res.ID == "" || res.Replicated == nil || *res.Replicated {
			t.Fatalf("a batch item with the replica down: %s", b.body)
		}
	}
	if m := next(t, bob, "message"); string(m.Data) != `"four"` {
		t.Fatalf("bob got %s", m.Raw)
	}
	if r := post(t, a.base+"/v1/rooms/lobby/messages", `"bye all"`, ""); r.status != http.StatusAccepted || r.json(t)["replicated"] != false {
		t.Fatalf("a room send with the replica down: %d %s", r.status, r.body)
	}
	if m := next(t, bob, "message"); string(m.Data) != `"bye all"` {
		t.Fatalf("bob got %s", m.Raw)
	}

	// Over the WebSocket the ack says the same: a direct send's (with its id and its copy's),
	// and a room send's.
	must(t, alice.SendRaw([]byte(`{"type":"send","to":"bob","data":"ws two","ref":"w2"}`)))
	ack, copied := ackAndCopy(t, alice)
	var wsAck map[string]any
	must(t, json.Unmarshal(ack.Raw, &wsAck))
	if wsAck["replicated"] != false || ack.ID == "" || ack.CopyID != copied.ID || ack.Ref != "w2" {
		t.Fatalf("a WebSocket DM with the replica down: ack %s, copy %s", ack.Raw, copied.Raw)
	}
	if m := next(t, bob, "message"); m.ID != ack.ID {
		t.Fatalf("bob got %s, want %s", m.Raw, ack.ID)
	}
	putMember(t, a, "lobby", "alice")
	must(t, alice.SendRaw([]byte(`{"type":"send","room":"lobby","data":"ws all","ref":"w3"}`)))
	for {
		f := nextFrame(t, alice)
		if f.Type == "message" && f.Room == "lobby" {
			continue // her own room message
		}
		wsAck = nil
		must(t, json.Unmarshal(f.Raw, &wsAck))
		if f.Type != "ack" || f.Ref != "w3" || wsAck["replicated"] != false || f.Recipients == nil || *f.Recipients != 2 {
			t.Fatalf("a WebSocket room send with the replica down: %s", f.Raw)
		}
		break
	}
	if m := next(t, bob, "message"); string(m.Data) != `"ws all"` {
		t.Fatalf("bob got %s", m.Raw)
	}
}

// TestWaitReplicasCoversBigRooms: a big room's send (one append to the room's stream and one
// publish) waits for the replica as the per-member path does, and says when it fell short.
func TestWaitReplicasCoversBigRooms(t *testing.T) {
	master := redistest.Start(t)
	replica := redistest.StartReplica(t, master)
	const timeout = 300 * time.Millisecond
	a := startNode(t, onRedis(master), "a", bigThreshold(2), func(o *nodeOptions) {
		o.subscriptions.WaitReplicas, o.subscriptions.WaitReplicasTimeout = 1, timeout
	})
	bob, _ := connect(t, a, "bob")
	putMember(t, a, "town", "bob")
	putMember(t, a, "town", "carol")
	message := func() wsclient.Frame { // the next message, past room_mode frames
		t.Helper()
		for {
			f, err := bob.NextWithin(10 * time.Second)
			must(t, err)
			if f.Type == "message" {
				return f
			}
		}
	}
	bigMessage := func(data string) wsclient.Frame {
		t.Helper()
		f := message()
		if !f.Big || string(f.Data) != data {
			t.Fatalf("bob got %s, want the big room's %s", f.Raw, data)
		}
		return f
	}
	onReplica := replica.Client(t)
	// The first send turns the room big (delivered per member); the second is sent big.
	for _, d := range []string{`"one"`, `"two"`} {
		r := post(t, a.base+"/v1/rooms/town/messages", d, "")
		if r.status != http.StatusAccepted || strings.Contains(string(r.body), "replicated") {
			t.Fatalf("with the replica up: %d %s", r.status, r.body)
		}
		if d == `"one"` {
			message()
			continue
		}
		id := r.json(t)["history_id"].(string)
		if f := bigMessage(d); f.ID != id {
			t.Fatalf("bob got %s, the send answered %s", f.Raw, r.body)
		}
		// No waiting: the answer came after the replica had it.
		got, err := onReplica.XRange(context.Background(), "{t:room:town}:history", id, id).Result()
		must(t, err)
		if len(got) != 1 {
			t.Fatalf("big room message %s answered but not on the replica", id)
		}
	}
	replica.Stop()
	testutil.WaitFor(t, 10*time.Second, func() bool { return master.OnlineReplicas(t) == 0 }, "the master sees its replica gone")
	start := time.Now()
	r := post(t, a.base+"/v1/rooms/town/messages", `"three"`, "")
	if r.status != http.StatusAccepted || r.json(t)["replicated"] != false || r.json(t)["history_id"] == nil {
		t.Fatalf("a big room's send with the replica down: %d %s", r.status, r.body)
	}
	if took := time.Since(start); took < timeout {
		t.Fatalf("answered in %v, before the wait's %v timeout", took, timeout)
	}
	if f := bigMessage(`"three"`); f.ID != r.json(t)["history_id"] {
		t.Fatalf("bob got %s, the send answered %s", f.Raw, r.body)
	}
}
