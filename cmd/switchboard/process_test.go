package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/events"
	"github.com/switchboard-dev/switchboard/internal/redistest"
	"github.com/switchboard-dev/switchboard/internal/testutil"
	"github.com/switchboard-dev/switchboard/internal/wsclient"
)

var built struct {
	once sync.Once
	path string
	err  error
}

// binary builds the switchboard binary once per test run.
func binary(t *testing.T) string {
	t.Helper()
	built.once.Do(func() {
		dir, err := os.MkdirTemp("", "switchboard-bin")
		if err != nil {
			built.err = err
			return
		}
		built.path = filepath.Join(dir, "switchboard")
		out, err := exec.Command("go", "build", "-o", built.path, ".").CombinedOutput()
		if err != nil {
			built.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.path
}

// osProcess is the switchboard binary running as a real process.
type osProcess struct {
	base string
	cmd  *exec.Cmd
	done chan struct{}
	log  *testutil.LockedBuffer
}

func startOSProcess(t *testing.T, args ...string) *osProcess {
	t.Helper()
	addr := freeAddr(t)
	p := &osProcess{base: "http://" + addr, done: make(chan struct{}), log: &testutil.LockedBuffer{}}
	p.cmd = exec.Command(binary(t), append([]string{"--addr", addr}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	p.cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("log of %s:\n%s", addr, p.log.String())
		}
	})
	testutil.Eventually(t, 15*time.Second, func() error {
		res, err := http.Get(p.base + "/readyz")
		if err != nil {
			return fmt.Errorf("node on %s never became ready: %w\n%s", addr, err, p.log.String())
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			return fmt.Errorf("node on %s never became ready: /readyz %d\n%s", addr, res.StatusCode, p.log.String())
		}
		return nil
	})
	return p
}

func (p *osProcess) ws(query url.Values) string {
	return "ws" + strings.TrimPrefix(p.base, "http") + "/ws?" + query.Encode()
}

func (p *osProcess) postDM(t *testing.T, user, data string) string {
	t.Helper()
	res, err := http.Post(p.base+"/v1/users/"+user+"/messages", "application/json", strings.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var ans struct{ ID string }
	if res.StatusCode != http.StatusAccepted || json.NewDecoder(res.Body).Decode(&ans) != nil {
		t.Fatalf("POST DM: %s", res.Status)
	}
	return ans.ID
}

func TestSIGTERMDrainsWith1012AndClientsResumeOnAnotherNode(t *testing.T) {
	srv := redistest.Start(t)
	n1 := startOSProcess(t, "--redis", srv.URL(), "--node-id", "n1")
	n2 := startOSProcess(t, "--redis", srv.URL(), "--node-id", "n2")
	nodes := []*osProcess{n1, n2}
	bob := &wsclient.Resumer{URL: func(attempt int, since string) string {
		q := url.Values{"user": {"bob"}}
		if since != "" {
			q.Set("since", since)
		}
		return nodes[attempt%2].ws(q)
	}}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { defer close(stopped); _ = bob.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-stopped })
	wait := func(what string, cond func(*wsclient.Resumer) bool) {
		t.Helper()
		wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
		defer wcancel()
		if err := bob.WaitFor(wctx, cond); err != nil {
			t.Fatalf("waiting for %s: %v (closes %v, %d messages)", what, err, bob.Closes(), len(bob.Messages()))
		}
	}
	wait("the first welcome", func(r *wsclient.Resumer) bool { return len(r.Welcomes()) == 1 })

	var ids []string
	var exited time.Duration
	for i := range 300 {
		if i == 100 {
			start := time.Now()
			if err := n1.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			select {
			case <-n1.done:
				exited = time.Since(start)
			case <-time.After(10 * time.Second):
				t.Fatal("SIGTERM: the node did not exit within 10s")
			}
			if code := n1.cmd.ProcessState.ExitCode(); code != 0 {
				t.Fatalf("exit code %d after SIGTERM", code)
			}
		}
		ids = append(ids, n2.postDM(t, "bob", fmt.Sprintf("%d", i)))
	}
	wait("every message", func(r *wsclient.Resumer) bool { return len(r.Messages()) >= len(ids) })
	var got []string
	for _, m := range bob.Messages() {
		got = append(got, m.ID)
	}
	if !slices.Equal(got, ids) {
		t.Fatalf("got %d messages, want exactly the %d sent, in order", len(got), len(ids))
	}
	if closes := bob.Closes(); len(closes) != 1 || closes[0] != 1012 {
		t.Fatalf("closes %v, want [1012]", closes)
	}
	if exited > 5*time.Second {
		t.Fatalf("drain took %s, want under 5s", exited)
	}
	t.Logf("SIGTERM to exit: %s; %d messages, none lost or repeated", exited, len(ids))
}

func TestSIGKILLedNodeDropsOutOfTheClusterView(t *testing.T) {
	srv := redistest.Start(t)
	n1 := startOSProcess(t, "--redis", srv.URL(), "--node-id", "n1")
	n2 := startOSProcess(t, "--redis", srv.URL(), "--node-id", "n2")
	bob, err := wsclient.Dial(n1.ws(url.Values{"user": {"bob"}}), wsclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer bob.Close()
	if f, err := bob.NextWithin(10 * time.Second); err != nil || f.Type != "welcome" {
		t.Fatalf("welcome: %v %v", f, err)
	}
	view := func() (nodes []string, bobSubscribers int64) {
		res, err := http.Get(n2.base + "/admin/subscriptions?scope=cluster")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var v struct {
			Nodes    []struct{ Node string }
			Channels []struct {
				User        string
				Subscribers int64
			}
		}
		if err := json.NewDecoder(res.Body).Decode(&v); err != nil {
			t.Fatal(err)
		}
		for _, n := range v.Nodes {
			nodes = append(nodes, n.Node)
		}
		for _, c := range v.Channels {
			if c.User == "bob" {
				bobSubscribers = c.Subscribers
			}
		}
		return nodes, bobSubscribers
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		if nodes, subs := view(); !slices.Equal(nodes, []string{"n1", "n2"}) || subs != 1 {
			return fmt.Errorf("cluster view %v, bob's subscribers %d", nodes, subs)
		}
		return nil
	})
	if err := n1.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-n1.done
	start := time.Now()
	testutil.Eventually(t, 20*time.Second, func() error {
		if nodes, subs := view(); !slices.Equal(nodes, []string{"n2"}) || subs != 0 {
			return fmt.Errorf("after SIGKILL the cluster view still shows %v, bob's subscribers %d", nodes, subs)
		}
		return nil
	})
	t.Logf("the killed node left the view after %s", time.Since(start).Round(time.Millisecond))
}

// webhook is a backend receiving events: it checks every signature and keeps each event
// once by id. While failing, it answers 500 to everything.
type webhook struct {
	srv     *httptest.Server
	mu      sync.Mutex
	seen    map[string]bool
	events  []map[string]any
	failing bool
}

func startWebhook(t *testing.T, secret string) *webhook {
	w := &webhook{seen: map[string]bool{}}
	w.srv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.failing {
			http.Error(rw, "down", http.StatusInternalServerError)
			return
		}
		if err := events.Verify(secret, r.Header, body, time.Now(), time.Minute); err != nil {
			t.Errorf("bad signature: %v", err)
			http.Error(rw, "bad signature", http.StatusUnauthorized)
			return
		}
		var b struct{ Events []map[string]any }
		_ = json.Unmarshal(body, &b)
		for _, e := range b.Events {
			if id, _ := e["id"].(string); !w.seen[id] {
				w.seen[id] = true
				w.events = append(w.events, e)
			}
		}
	}))
	t.Cleanup(w.srv.Close)
	return w
}

func (w *webhook) count(user, typ string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, e := range w.events {
		if e["user"] == user && e["type"] == typ {
			n++
		}
	}
	return n
}

func TestKilledNodesEventsAreSentByAnotherAndItsUsersGoOffline(t *testing.T) {
	srv := redistest.Start(t)
	hook := startWebhook(t, "s3cret")
	args := func(node string) []string {
		return []string{"--redis", srv.URL(), "--node-id", node, "--webhook-url", hook.srv.URL, "--webhook-secret", "s3cret"}
	}
	n1 := startOSProcess(t, args("n1")...)
	n2 := startOSProcess(t, args("n2")...)
	alice, err := wsclient.Dial(n2.ws(url.Values{"user": {"alice"}}), wsclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer alice.Close()
	bob, err := wsclient.Dial(n1.ws(url.Values{"user": {"bob"}}), wsclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer bob.Close()
	for _, c := range []*wsclient.Conn{alice, bob} {
		if f, err := c.NextWithin(10 * time.Second); err != nil || f.Type != "welcome" {
			t.Fatalf("welcome: %v %v", f, err)
		}
	}
	testutil.WaitFor(t, 10*time.Second, func() bool { return hook.count("bob", "user.online") == 1 && hook.count("alice", "user.online") == 1 }, "both users online")

	// The webhook fails while bob's client events queue up on n1; then n1 dies.
	hook.mu.Lock()
	hook.failing = true
	hook.mu.Unlock()
	const pending = 50
	for i := range pending {
		if err := bob.Send(map[string]any{"type": "event", "name": "tap", "data": i}); err != nil {
			t.Fatal(err)
		}
		if f, err := bob.NextWithin(10 * time.Second); err != nil || f.Type != "ack" {
			t.Fatalf("event %d: %v %v", i, f, err)
		}
	}
	if err := n1.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-n1.done
	killed := time.Now()
	hook.mu.Lock()
	hook.failing = false
	hook.mu.Unlock()

	testutil.WaitFor(t, 90*time.Second, func() bool { return hook.count("bob", "client.event") == pending }, "every event queued on the killed node")
	testutil.WaitFor(t, 90*time.Second, func() bool { return hook.count("bob", "user.offline") == 1 }, "bob's user.offline")
	t.Logf("after SIGKILL: events delivered and bob offline within %s", time.Since(killed).Round(time.Millisecond))
	if hook.count("alice", "user.offline") != 0 {
		t.Fatal("alice, on the surviving node, went offline")
	}
	res, err := http.Get(n2.base + "/v1/users/bob/presence")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if string(body) != `{"online":false,"connections":0}`+"\n" {
		t.Fatalf("bob's presence after his node died: %s", body)
	}
	// Presence stays right when he reconnects elsewhere.
	again, err := wsclient.Dial(n2.ws(url.Values{"user": {"bob"}}), wsclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if f, err := again.NextWithin(10 * time.Second); err != nil || f.Type != "welcome" {
		t.Fatalf("welcome: %v %v", f, err)
	}
	testutil.WaitFor(t, 10*time.Second, func() bool { return hook.count("bob", "user.online") == 2 }, "bob online again")
	res, err = http.Get(n2.base + "/v1/users/bob/presence")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(res.Body)
	res.Body.Close()
	if string(body) != `{"online":true,"connections":1}`+"\n" {
		t.Fatalf("bob's presence after reconnecting: %s", body)
	}
}
