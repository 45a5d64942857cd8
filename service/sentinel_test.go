package service_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/internal/redistest"
	"github.com/switchboard-dev/switchboard/internal/testutil"
	"github.com/switchboard-dev/switchboard/internal/wsclient"
)

// acked is a send a sender saw accepted: to whom, what, whether the replicas had it, and
// whether an earlier attempt failed (a 503 or a network error) before it was accepted.
type acked struct {
	user, data string
	replicated bool
	retried    bool
}

// sendersLog collects what 8 senders had accepted.
type sendersLog struct {
	mu   sync.Mutex
	acks []acked
	n    atomic.Int64
}

func (l *sendersLog) add(a acked) {
	l.mu.Lock()
	l.acks = append(l.acks, a)
	l.mu.Unlock()
	l.n.Add(1)
}

// sendUntilAccepted posts one message (to a user, or with room set to the room) under its
// own Idempotency-Key, retrying with the same key on a refusal or a network error, as a
// backend does, until it is accepted or ctx ends.
func sendUntilAccepted(ctx context.Context, n *node, user, room, data string) (acked, bool) {
	path := "/v1/users/" + user + "/messages"
	if room != "" {
		path, user = "/v1/rooms/"+room+"/messages", room
	}
	for attempt := 0; ctx.Err() == nil; attempt++ {
		r, err := request("POST", n.base+path, "application/json",
			strings.NewReader(`"`+data+`"`), "Idempotency-Key", data)
		if err == nil && r.status == http.StatusAccepted {
			var ans struct{ Replicated *bool }
			_ = json.Unmarshal(r.body, &ans)
			return acked{user: user, data: `"` + data + `"`, replicated: ans.Replicated == nil, retried: attempt > 0}, true
		}
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
	return acked{}, false
}

// TestSentinelFailoverLosesNoAckedMessage: one master, one replica, three sentinels; 8
// senders post DMs and room messages (retrying with their Idempotency-Key) to 4 users who
// follow on a node with --wait-replicas 1; the master is SIGKILLed mid-stream. After the
// sentinels promote the replica, the node's Pub/Sub is rebuilt on it and every message
// acknowledged as replicated reaches its user; none arrives twice.
func TestSentinelFailoverLosesNoAckedMessage(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a master, a replica and three sentinels")
	}
	sentinelFailover(t, 1, false).exactlyOnce(t)
}

// TestSentinelFailoverWithALaggingReplicaLosesNoAckedMessage: the same, with the replica
// cut off for the last 24 sends before the kill, as a replica across a slow network lags;
// its promotion drops what it never got. Every message acknowledged as replicated is still
// on the new master and at its user, and none arrives twice: a send whose answer was lost
// with the master (the old master published it, the replica never got it nor its key's
// record, and the backend's retry stored it again under another id) carries its key's
// dedupe token, and the follower's connection is not handed the repeat.
func TestSentinelFailoverWithALaggingReplicaLosesNoAckedMessage(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a master, a replica and three sentinels")
	}
	sentinelFailover(t, 1, true).exactlyOnce(t)
}

// TestSentinelFailoverWithoutWaitIsMeasured runs the same failover without --wait-replicas,
// to measure what it loses (docs/deployment.md); it asserts nothing, so it runs only when
// SWITCHBOARD_MEASURE_FAILOVER=1.
func TestSentinelFailoverWithoutWaitIsMeasured(t *testing.T) {
	if os.Getenv("SWITCHBOARD_MEASURE_FAILOVER") != "1" {
		t.Skip("a measurement: set SWITCHBOARD_MEASURE_FAILOVER=1")
	}
	sentinelFailover(t, 0, true)
}

// sentinelFailover runs the failover with waitReplicas (and, with lag, the replica cut off
// before the kill) and counts what was acknowledged, lost and duplicated.
func sentinelFailover(t *testing.T, waitReplicas int, lag bool) failoverCount {
	master := redistest.Start(t)
	replica := redistest.StartReplica(t, master)
	ss := redistest.StartSentinels(t, "sb", master, 3)
	redistest.WaitSentinelsAgree(t, ss, "sb", 1)
	var addrs []string
	for _, s := range ss {
		addrs = append(addrs, s.Addr())
	}
	be := backend{sentinel: addrs, master: "sb", prefix: "t"}
	a := startNode(t, be, "a", func(o *nodeOptions) {
		o.subscriptions.WaitReplicas, o.subscriptions.WaitReplicasTimeout = waitReplicas, 250*time.Millisecond
	})
	return failoverRun(t, a, []string{"u0", "u1", "u2", "u3"}, master, replica, lag, func() bool {
		m, err := ss[0].MasterAddr("sb")
		return err == nil && m == replica.Addr()
	})
}

// failoverRun has users follow on node a (and join a room) while 8 senders post to them,
// 6 DMs and 2 room messages, each retried under its key until accepted; once 100 were
// accepted it SIGKILLs the master (with lag, first it cuts the replica off — frozen, and its
// link dropped by the master, so that what the master writes next reaches no replica, as
// across a slow network; on one host a replica is microseconds behind, and a kill would
// rarely fall in the gap — until 24 more were accepted, and thaws it after the kill), waits
// until recovered says the failover is done and 60 more were accepted, and then counts
// what the followers got and what the new master holds.
func failoverRun(t *testing.T, a *node, users []string, master, replica *redistest.Server, lag bool, recovered func() bool) failoverCount {
	t.Helper()
	followers := map[string]*wsclient.Resumer{}
	for _, u := range users {
		putMember(t, a, "lobby", u)
		followers[u] = resumer(t, u, a)
	}
	var log sendersLog
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for n := 0; ctx.Err() == nil; n++ {
				room := ""
				if i < 2 { // two of the eight post to the room all the users are in
					room = "lobby"
				}
				if ack, ok := sendUntilAccepted(ctx, a, users[(i+n)%len(users)], room, fmt.Sprintf("s%d-%d", i, n)); ok {
					log.add(ack)
				}
			}
		})
	}
	defer func() { stop(); wg.Wait() }()
	testutil.WaitFor(t, 20*time.Second, func() bool { return log.n.Load() >= 100 }, "100 sends before the kill")
	if lag {
		replica.Freeze()
		must(t, master.Client(t).Do(context.Background(), "CLIENT", "KILL", "TYPE", "replica").Err())
		frozenAt := log.n.Load()
		testutil.WaitFor(t, 20*time.Second, func() bool { return log.n.Load() >= frozenAt+24 }, "24 sends with the replica cut off")
	}
	master.Stop()
	replica.Thaw()
	killedAt := log.n.Load()
	testutil.WaitFor(t, 30*time.Second, recovered, "the failover")
	testutil.WaitFor(t, 30*time.Second, func() bool { return log.n.Load() >= killedAt+60 }, "60 sends after the failover")
	stop()
	wg.Wait()
	return countFailover(t, a, &log, followers)
}

// failoverCount is what a failover run counted.
type failoverCount struct {
	lost, duplicated int
	// duplicatedRetried: of the duplicated, those whose send was retried after an error.
	duplicatedRetried int
}

// exactlyOnce fails the test unless every acknowledged message arrived, once.
func (c failoverCount) exactlyOnce(t *testing.T) {
	t.Helper()
	if c.lost > 0 || c.duplicated > 0 {
		t.Fatalf("lost %d and duplicated %d acknowledged messages across the failover (%d of the duplicates retried sends)",
			c.lost, c.duplicated, c.duplicatedRetried)
	}
}

// countFailover waits for every replicated acknowledged message at its user and counts
// acked, delivered, lost and duplicated. A message is lost if its user never got it, or if
// it is not in the user's stream on the new master (a follower may have seen it live from
// the old one, but nothing that resumes or reads history ever will).
func countFailover(t *testing.T, a *node, log *sendersLog, followers map[string]*wsclient.Resumer) (c failoverCount) {
	t.Helper()
	want := map[string]map[string]bool{}
	retried := map[string]bool{}
	unreplicated := 0
	for _, a := range log.acks {
		retried[a.data] = a.retried
		if !a.replicated {
			unreplicated++
			continue
		}
		to := []string{a.user}
		if a.user == "lobby" { // a room message: every member
			to = nil
			for u := range followers {
				to = append(to, u)
			}
		}
		for _, u := range to {
			if want[u] == nil {
				want[u] = map[string]bool{}
			}
			want[u][a.data] = true
		}
	}
	delivered := 0
	for user, f := range followers {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		_ = f.WaitFor(ctx, func(r *wsclient.Resumer) bool {
			got := map[string]bool{}
			for _, m := range r.Messages() {
				got[string(m.Data)] = true
			}
			for d := range want[user] {
				if !got[d] {
					return false
				}
			}
			return true
		})
		cancel()
		seen := map[string]int{}
		for _, m := range f.Messages() {
			seen[string(m.Data)]++
		}
		for d, k := range seen {
			delivered++
			if k > 1 {
				c.duplicated++
				if retried[d] {
					c.duplicatedRetried++
				}
				t.Logf("%s got %s %d times (its send retried: %v)", user, d, k, retried[d])
			}
		}
		stored := map[string]bool{}
		for _, m := range history(t, a, "/v1/users/"+user+"/messages?limit=1000") {
			stored[string(m.Data)] = true
		}
		for d := range want[user] {
			switch {
			case seen[d] == 0:
				c.lost++
				t.Logf("%s never got %s", user, d)
			case !stored[d]:
				c.lost++
				t.Logf("%s got %s, but the new master does not have it", user, d)
			}
		}
	}
	repeats := 0
	for _, f := range followers {
		repeats += f.Repeats()
	}
	t.Logf("acked %d (%d not confirmed by the replica), delivered %d, lost %d, duplicated %d (%d of them retried sends); "+
		"repeats dropped by the followers' dedupe across reconnects: %d",
		len(log.acks), unreplicated, delivered, c.lost, c.duplicated, c.duplicatedRetried, repeats)
	return c
}
