package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/internal/redistest"
	"github.com/switchboard-dev/switchboard/internal/testutil"
	"github.com/switchboard-dev/switchboard/internal/wsclient"
)

// The example backend in front of a real switchboard process: a browser-like client logs
// in at the backend, opens /ws with its session cookie and no token (the connect hook says
// who it is), joins and messages as the authorize hook allows, calls the rpc hook, and the
// backend receives the events — every request signed and checked.
func TestExampleBackendWithARealNode(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the switchboard binary")
	}
	const secret = "example-e2e-secret"
	logs := &testutil.LockedBuffer{}
	backend, err := New(Config{Secret: secret, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	api := httptest.NewServer(backend)
	t.Cleanup(api.Close)
	redis := redistest.Start(t)
	node := startSwitchboard(t,
		"--redis", redis.URL(),
		"--webhook-secret", secret,
		"--connect-url", api.URL+"/hooks/connect",
		"--authorize-url", api.URL+"/hooks/authorize",
		"--rpc-url", api.URL+"/hooks/rpc",
		"--webhook-url", api.URL+"/events",
	)

	login := func(user string) string {
		t.Helper()
		client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		res, err := client.Get(api.URL + "/login?user=" + user)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		for _, c := range res.Cookies() {
			if c.Name == "session" {
				return c.Name + "=" + c.Value
			}
		}
		t.Fatalf("login of %s set no session cookie (%s)", user, res.Status)
		return ""
	}
	dial := func(cookie string) *wsclient.Conn {
		t.Helper()
		c, err := wsclient.Dial(node.ws(), wsclient.Options{Header: http.Header{"Cookie": {cookie}}})
		if err != nil {
			t.Fatalf("dial with %q: %v", cookie, err)
		}
		t.Cleanup(c.Close)
		return c
	}
	// No session: the backend refuses, and so does the node's upgrade.
	if _, err := wsclient.Dial(node.ws(), wsclient.Options{}); !isRefused(err, http.StatusUnauthorized) {
		t.Fatalf("dial without a session: %v, want a 401 refusal", err)
	}
	alice, bob := dial(login("alice")), dial(login("bob"))
	for who, c := range map[string]*wsclient.Conn{"alice": alice, "bob": bob} {
		if w := nextType(t, c, "welcome"); w.User != who {
			t.Fatalf("welcome %s, want %s", w.Raw, who)
		}
	}
	// The authorize hook: alice is in team red, not blue; she shares red with bob.
	for frame, want := range map[string]string{
		`{"type":"join","room":"team.red.general","ref":"j1"}`:  "ack",
		`{"type":"join","room":"team.blue.general","ref":"j2"}`: "forbidden",
		`{"type":"send","to":"bob","data":"hi bob","ref":"d1"}`: "ack",
		`{"type":"send","to":"carol","data":"hi","ref":"d2"}`:   "forbidden",
	} {
		must(t, alice.SendRaw([]byte(frame)))
		if f := answerOf(t, alice); f.Type != want && f.Code != want {
			t.Fatalf("%s: %s, want %s", frame, f.Raw, want)
		}
	}
	if m := nextType(t, bob, "message"); m.From != "alice" || string(m.Data) != `"hi bob"` {
		t.Fatalf("bob got %s", m.Raw)
	}
	// The rpc hook.
	must(t, alice.SendRaw([]byte(`{"type":"rpc","method":"orders.get","data":{"id":"A-1001"},"ref":"r1"}`)))
	if f := answerOf(t, alice); f.Type != "result" || !strings.Contains(string(f.Data), `"keyboard"`) {
		t.Fatalf("orders.get: %s", f.Raw)
	}
	must(t, alice.SendRaw([]byte(`{"type":"rpc","method":"orders.get","data":{"id":"B-2001"},"ref":"r2"}`)))
	if f := answerOf(t, alice); f.Code != "rpc_failed" || !strings.Contains(string(f.Raw), `"status":404`) {
		t.Fatalf("someone else's order: %s, want rpc_failed with status 404", f.Raw)
	}
	// The events reached the backend, signed: both users online, alice's join.
	testutil.Eventually(t, 15*time.Second, func() error {
		for _, id := range []string{"alice", "bob"} {
			if !strings.Contains(logs.String(), "type=user.online user="+id+" ") {
				return fmt.Errorf("no user.online for %s yet", id)
			}
		}
		if !strings.Contains(logs.String(), "type=room.joined user=alice ") {
			return fmt.Errorf("no room.joined for alice yet")
		}
		return nil
	})
}

// answerOf reads frames until an ack, error or result arrives (skipping messages).
func answerOf(t *testing.T, c *wsclient.Conn) wsclient.Frame {
	t.Helper()
	for {
		f, err := c.NextWithin(10 * time.Second)
		if err != nil {
			t.Fatalf("waiting for an answer: %v", err)
		}
		if f.Type == "ack" || f.Type == "error" || f.Type == "result" {
			return f
		}
	}
}

func nextType(t *testing.T, c *wsclient.Conn, typ string) wsclient.Frame {
	t.Helper()
	f, err := c.NextWithin(10 * time.Second)
	if err != nil || f.Type != typ {
		t.Fatalf("want a %s frame, got %s (%v)", typ, f.Raw, err)
	}
	return f
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func isRefused(err error, status int) bool {
	r, ok := err.(*wsclient.ErrRefused)
	return ok && r.Status == status
}

// switchboard is the switchboard binary running as a process.
type switchboard struct{ base string }

func (s switchboard) ws() string { return "ws" + strings.TrimPrefix(s.base, "http") + "/ws" }

// startSwitchboard builds cmd/switchboard and runs it on a free loopback port with args,
// until the test ends.
func startSwitchboard(t *testing.T, args ...string) switchboard {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "switchboard")
	build := exec.Command("go", "build", "-o", bin, "../../cmd/switchboard")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	log := &testutil.LockedBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, append([]string{"--addr", addr}, args...)...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
		if t.Failed() {
			t.Logf("switchboard's log:\n%s", log.String())
		}
	})
	s := switchboard{base: "http://" + addr}
	testutil.Eventually(t, 20*time.Second, func() error {
		res, err := http.Get(s.base + "/readyz")
		if err != nil {
			return err
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			return fmt.Errorf("/readyz %d", res.StatusCode)
		}
		return nil
	})
	return s
}
