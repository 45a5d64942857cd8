package service_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/internal/wsclient"
	"github.com/switchboard-dev/switchboard/subscriptions"
)

// nextFrame reads the next frame of any type, sender copies included.
func nextFrame(t *testing.T, c *wsclient.Conn) wsclient.Frame {
	t.Helper()
	f, err := c.NextWithin(10 * time.Second)
	if err != nil {
		t.Fatalf("waiting for a frame: %v", err)
	}
	return f
}

// ackAndCopy reads the ack of a DM the connection sent and the sender's copy that its own
// channel brings, in whichever order they come.
func ackAndCopy(t *testing.T, c *wsclient.Conn) (ack, copied wsclient.Frame) {
	t.Helper()
	for ack.Type == "" || copied.Type == "" {
		f := nextFrame(t, c)
		switch {
		case f.Type == "ack" && ack.Type == "":
			ack = f
		case f.Type == "message" && f.To != "" && copied.Type == "":
			copied = f
		default:
			t.Fatalf("want an ack and a copy, got %s", f.Raw)
		}
	}
	return ack, copied
}

// history reads GET /v1/users/{user}/messages (or any path answering {"messages":[...]}).
func history(t *testing.T, n *node, path string) []wsclient.Frame {
	t.Helper()
	r := do(t, "GET", n.base+path, "", nil)
	if r.status != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, r.status, r.body)
	}
	var body struct{ Messages []wsclient.Frame }
	if err := json.Unmarshal(r.body, &body); err != nil {
		t.Fatalf("GET %s: %v in %s", path, err, r.body)
	}
	return body.Messages
}

// bucketTag is the hash tag of a user's keys under prefix.
func bucketTag(prefix, user string) string {
	ch := subscriptions.ChannelName(prefix, user)
	return ch[:strings.IndexByte(ch, '}')+1]
}

// otherBucket returns the first of candidates whose keys live in another bucket than
// user's: on Redis Cluster another slot, so that a DM between them is two writes.
func otherBucket(t *testing.T, prefix, user string, candidates ...string) string {
	t.Helper()
	for _, c := range candidates {
		if bucketTag(prefix, c) != bucketTag(prefix, user) {
			return c
		}
	}
	t.Fatalf("every candidate shares %s's bucket", user)
	return ""
}

func testClientDMIsCopiedToEverySenderDeviceAndHistory(t *testing.T, be backend) {
	a := startNode(t, be, "a")
	b := startNode(t, be, "b")
	bobName := otherBucket(t, be.prefix, "alice", "bob", "bobby", "robert", "rob")
	alice, w := connect(t, a, "alice")
	alicePhone, _ := connect(t, b, "alice")
	bob, _ := connect(t, b, bobName)

	must(t, alice.SendRaw([]byte(`{"type":"send","to":"`+bobName+`","data":{"text":"hi"},"ref":"1"}`)))
	ack, mine := ackAndCopy(t, alice)
	if ack.Ref != "1" || ack.ID == "" || ack.CopyID == "" || ack.Copy != nil {
		t.Fatalf("ack %s: want the recipient's id and the copy's", ack.Raw)
	}
	if m := next(t, bob, "message"); m.ID != ack.ID || m.From != "alice" || m.To != "" || string(m.Data) != `{"text":"hi"}` {
		t.Fatalf("%s got %s", bobName, m.Raw)
	}
	for name, m := range map[string]wsclient.Frame{"the sending tab": mine, "alice's phone": nextFrame(t, alicePhone)} {
		if m.Type != "message" || m.ID != ack.CopyID || m.From != "alice" || m.To != bobName || string(m.Data) != `{"text":"hi"}` {
			t.Fatalf("%s got %s, want the copy %s to %s", name, m.Raw, ack.CopyID, bobName)
		}
	}
	// The reply reaches every device of alice; her history and resume hold both sides.
	must(t, bob.SendRaw([]byte(`{"type":"send","to":"alice","data":"hello","ref":"2"}`)))
	if ack, copied := ackAndCopy(t, bob); copied.ID != ack.CopyID {
		t.Fatalf("%s's ack %s and copy %s", bobName, ack.Raw, copied.Raw)
	}
	reply := next(t, alicePhone, "message")
	if reply.From != bobName || reply.To != "" {
		t.Fatalf("alice's phone got %s", reply.Raw)
	}
	if m := next(t, alice, "message"); m.ID != reply.ID {
		t.Fatalf("alice got %s, want the reply", m.Raw)
	}
	hist := history(t, a, "/v1/users/alice/messages")
	if len(hist) != 2 || hist[0].ID != ack.CopyID || hist[0].To != bobName || hist[1].ID != reply.ID {
		t.Fatalf("alice's history %+v, want her copy then the reply", hist)
	}
	again, _ := connect(t, b, "alice", "since", w.LastID)
	checkExactly(t, []wsclient.Frame{nextFrame(t, again), nextFrame(t, again)}, []string{ack.CopyID, reply.ID})

	// A message to oneself is stored once; a backend's DM has no sender to copy to.
	must(t, alice.SendRaw([]byte(`{"type":"send","to":"alice","data":"note","ref":"3"}`)))
	var self wsclient.Frame
	for range 2 { // the ack, and the message on her own channel, in either order
		if f := nextFrame(t, alice); f.Type == "ack" {
			self = f
		} else if f.Type != "message" || f.To != "" {
			t.Fatalf("alice got %s after a note to herself", f.Raw)
		}
	}
	if self.Ref != "3" || self.CopyID != "" || self.Copy != nil {
		t.Fatalf("ack of a DM to oneself %s: want no copy", self.Raw)
	}
	r := do(t, "POST", a.base+"/v1/users/"+bobName+"/messages?from=alice", "application/json", strings.NewReader(`"from the backend"`))
	if r.status != http.StatusAccepted {
		t.Fatalf("POST: %d %s", r.status, r.body)
	}
	next(t, bob, "message")
	if hist := history(t, a, "/v1/users/alice/messages"); len(hist) != 3 || hist[2].Data == nil || string(hist[2].Data) != `"note"` {
		t.Fatalf("alice's history after a note to herself and a backend DM: %+v", hist)
	}
	// A recipient in alice's own bucket: on Redis Cluster both writes are one script call.
	var near string
	for i := 0; near == ""; i++ {
		if u := "p" + strconv.Itoa(i); bucketTag(be.prefix, u) == bucketTag(be.prefix, "alice") {
			near = u
		}
	}
	must(t, alice.SendRaw([]byte(`{"type":"send","to":"`+near+`","data":"near","ref":"4"}`)))
	if ack, copied := ackAndCopy(t, alice); ack.CopyID == "" || copied.ID != ack.CopyID || copied.To != near {
		t.Fatalf("DM to %s in alice's bucket: ack %s, copy %s", near, ack.Raw, copied.Raw)
	}
	if got := history(t, a, "/v1/users/"+near+"/messages"); len(got) != 1 || got[0].From != "alice" || got[0].To != "" {
		t.Fatalf("%s's history %+v", near, got)
	}
}

// On Redis Cluster the recipient's message and the sender's copy live in different slots
// and are two writes; the second can fail after the first was stored. The message was
// accepted: the ack carries the recipient's id and "copy":false, the recipient has it, and
// the failure is counted. The sender's stream key holding another type makes the copy's
// write fail (on a single Redis too, inside the one script call).
func testFailedSenderCopyStillAcksTheRecipientsMessage(t *testing.T, be backend) {
	a := startNode(t, be, "a")
	bobName := otherBucket(t, be.prefix, "alice", "bob", "bobby", "robert", "rob")
	alice, _ := connect(t, a, "alice")
	bob, _ := connect(t, a, bobName)
	rdb := be.open(t, false)
	t.Cleanup(func() { _ = rdb.Close() })
	must(t, rdb.Set(context.Background(), streamKey(be.prefix, "alice"), "not a stream", 0).Err())

	ack := ack(t, alice, `{"type":"send","to":"`+bobName+`","data":"hi","ref":"1"}`)
	if ack.ID == "" || ack.CopyID != "" || ack.Copy == nil || *ack.Copy {
		t.Fatalf("ack %s: want the recipient's id and \"copy\":false", ack.Raw)
	}
	if m := next(t, bob, "message"); m.ID != ack.ID {
		t.Fatalf("%s got %s, want %s", bobName, m.Raw, ack.ID)
	}
	if got := metric(t, a, "switchboard_dm_copy_failures_total"); got != 1 {
		t.Fatalf("copy failures %v, want 1", got)
	}
	noFrame(t, alice, 100*time.Millisecond)
	// Once the key is a stream again, copies are stored again.
	must(t, rdb.Del(context.Background(), streamKey(be.prefix, "alice")).Err())
	must(t, alice.SendRaw([]byte(`{"type":"send","to":"`+bobName+`","data":"again","ref":"2"}`)))
	if ack, _ := ackAndCopy(t, alice); ack.CopyID == "" {
		t.Fatalf("ack %s: want a copy id", ack.Raw)
	}
}
