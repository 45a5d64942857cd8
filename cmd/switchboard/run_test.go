package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/internal/redistest"
	"github.com/switchboard-dev/switchboard/internal/testutil"
	"github.com/switchboard-dev/switchboard/internal/wsclient"
)

// process is one run of the binary's run function in the test process.
type process struct {
	base   string // http://127.0.0.1:port
	cancel context.CancelFunc
	done   chan struct{} // closed when run has returned
	err    error         // run's result, set before done closes
	log    *testutil.LockedBuffer
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// startProcess calls run with args and getenv in a goroutine, as main does, and waits
// until /readyz answers 200. The test's cleanup cancels it and waits for it to return.
func startProcess(t *testing.T, getenv func(string) string, args ...string) *process {
	t.Helper()
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	p := &process{base: "http://" + addr, cancel: cancel, done: make(chan struct{}), log: &testutil.LockedBuffer{}}
	go func() {
		defer close(p.done)
		p.err = run(ctx, append([]string{"--addr", addr}, args...), getenv, p.log)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-p.done:
		case <-time.After(15 * time.Second):
			t.Errorf("run did not return within 15s of its context ending")
		}
		if t.Failed() {
			t.Logf("run's log:\n%s", p.log.String())
		}
	})
	exited := false
	testutil.Eventually(t, 10*time.Second, func() error {
		select {
		case <-p.done:
			exited = true // run will never be ready: stop polling and fail below
			return nil
		default:
		}
		res, err := http.Get(p.base + "/readyz")
		if err != nil {
			return fmt.Errorf("/readyz did not answer 200: %w\n%s", err, p.log.String())
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			return fmt.Errorf("/readyz answered %d, not 200\n%s", res.StatusCode, p.log.String())
		}
		return nil
	})
	if exited {
		t.Fatalf("run returned before it was ready: %v\n%s", p.err, p.log.String())
	}
	return p
}

// stop cancels run's context and returns run's result, failing if it takes longer than d.
func (p *process) stop(t *testing.T, d time.Duration) error {
	t.Helper()
	p.cancel()
	select {
	case <-p.done:
		return p.err
	case <-time.After(d):
		t.Fatalf("run did not return within %s of its context ending", d)
		return nil
	}
}

// dial opens a WebSocket on p with query and returns it with its first frame.
func (p *process) dial(t *testing.T, query string) (*wsclient.Conn, wsclient.Frame) {
	t.Helper()
	c, err := wsclient.Dial("ws"+strings.TrimPrefix(p.base, "http")+"/ws?"+query, wsclient.Options{})
	if err != nil {
		t.Fatalf("dial /ws?%s: %v", query, err)
	}
	t.Cleanup(c.Close)
	f, err := c.NextWithin(10 * time.Second)
	if err != nil {
		t.Fatalf("first frame: %v", err)
	}
	return c, f
}

// post sends body to path and returns the status and the answer.
func (p *process) post(t *testing.T, path, contentType, body string, header ...string) (int, []byte) {
	t.Helper()
	return p.do(t, "POST", path, contentType, body, header...)
}

// do sends a request to path and returns the status and the answer.
func (p *process) do(t *testing.T, method, path, contentType, body string, header ...string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, p.base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b
}

func noEnv(string) string { return "" }

func TestRunServesEndToEndAndDrainsOnCancel(t *testing.T) {
	cases := []struct {
		name  string
		redis func(t *testing.T) []string // extra args
	}{
		{"with the embedded Redis", func(*testing.T) []string { return nil }},
		{"with a real Redis", func(t *testing.T) []string { return []string{"--redis", redistest.Start(t).URL()} }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := startProcess(t, noEnv, tc.redis(t)...)
			if !strings.Contains(p.log.String(), "DEV MODE") {
				t.Fatalf("without a JWT secret the log must say it is in dev mode:\n%s", p.log.String())
			}
			bob, w := p.dial(t, "user=bob")
			if w.Type != "welcome" || w.User != "bob" {
				t.Fatalf("first frame %s, want bob's welcome", w.Raw)
			}

			status, body := p.post(t, "/v1/users/bob/messages", "application/json", `{"text":"hi"}`)
			if status != http.StatusAccepted {
				t.Fatalf("POST: %d %s", status, body)
			}
			var a struct{ ID string }
			if err := json.Unmarshal(body, &a); err != nil || a.ID == "" {
				t.Fatalf("POST answer %q has no id", body)
			}
			m, err := bob.NextWithin(10 * time.Second)
			if err != nil || m.Type != "message" || m.ID != a.ID || string(m.Data) != `{"text":"hi"}` {
				t.Fatalf("bob got %s (%v), want message %s", m.Raw, err, a.ID)
			}

			start := time.Now()
			if err := p.stop(t, 10*time.Second); err != nil {
				t.Fatalf("run returned %v after a graceful stop, want nil", err)
			}
			select {
			case <-bob.Done():
			case <-time.After(5 * time.Second):
				t.Fatal("bob's connection is still open after run returned")
			}
			if code, err := bob.CloseCode(); code != 1012 {
				t.Fatalf("bob's connection closed with %d (%v), want 1012 (restarting: reconnect and resume)", code, err)
			}
			if d := time.Since(start); d > 6*time.Second {
				t.Fatalf("stopping took %s; WebSockets must be closed within 5s", d)
			}
			if res, err := http.Get(p.base + "/healthz"); err == nil {
				res.Body.Close()
				t.Fatalf("after run returned the address still answers: %d", res.StatusCode)
			}
		})
	}
}

func TestRunStoresMessagesInTheConfiguredRedis(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	p := startProcess(t, noEnv, "--redis", srv.URL())
	status, body := p.post(t, "/v1/users/dora/messages", "text/plain", "hello")
	if status != http.StatusAccepted {
		t.Fatalf("POST: %d %s", status, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	keys, err := rdb.Keys(ctx, "*stream:dora").Result()
	if err != nil || len(keys) != 1 {
		t.Fatalf("dora's stream in the configured Redis: %v, %v", keys, err)
	}
	if n, err := rdb.XLen(ctx, keys[0]).Result(); err != nil || n != 1 {
		t.Fatalf("XLEN %s: %d, %v; want 1", keys[0], n, err)
	}
}

func TestRunPassesSettingsToTheServer(t *testing.T) {
	getenv := fakeEnv("SWITCHBOARD_API_KEY", "env-key", "SWITCHBOARD_MAX_MESSAGE_BYTES", "16")
	p := startProcess(t, getenv, "--jwt-secret", "flag-secret")
	cases := []struct {
		name   string
		method string
		path   string
		body   string
		header []string
		status int
	}{
		{"a POST without the API key from the environment is refused", "POST", "/v1/users/bob/messages", `1`, nil, http.StatusUnauthorized},
		{"a POST with the API key is accepted", "POST", "/v1/users/bob/messages", `1`, []string{"Authorization", "Bearer env-key"}, http.StatusAccepted},
		{"a POST over the message size from the environment is refused", "POST", "/v1/users/bob/messages", `"0123456789abcdef"`, []string{"Authorization", "Bearer env-key"}, http.StatusRequestEntityTooLarge},
		{"admin refuses a request without the key it took from the API key", "GET", "/admin/subscriptions", ``, nil, http.StatusUnauthorized},
		{"admin accepts the API key, its default admin key", "GET", "/admin/subscriptions", ``, []string{"Authorization", "Bearer env-key"}, http.StatusOK},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if status, body := p.do(t, tc.method, tc.path, "application/json", tc.body, tc.header...); status != tc.status {
				t.Fatalf("%s %s: %d %s, want %d", tc.method, tc.path, status, body, tc.status)
			}
		})
	}
	t.Run("a dev user is refused once a JWT secret is set", func(t *testing.T) {
		_, err := wsclient.Dial("ws"+strings.TrimPrefix(p.base, "http")+"/ws?user=bob", wsclient.Options{})
		var refused *wsclient.ErrRefused
		if !errors.As(err, &refused) || refused.Status != http.StatusUnauthorized {
			t.Fatalf("dial as a dev user: %v, want a 401 refusal", err)
		}
	})
}

func TestRunRefusesWhatItCannotServe(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { busy.Close() })
	cases := []struct {
		name string
		args []string
	}{
		{"an invalid flag value", []string{"--history-size", "0"}},
		{"an unknown log level", []string{"--log-level", "loud"}},
		{"a node id outside the id alphabet", []string{"--node-id", "node one"}},
		{"a Redis address that is not a URL", []string{"--redis", "localhost:6379"}},
		{"an address already in use", []string{"--addr", busy.Addr().String()}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			var log testutil.LockedBuffer
			go func() { done <- run(ctx, append([]string{"--addr", "127.0.0.1:0"}, tc.args...), noEnv, &log) }()
			select {
			case err := <-done:
				if err == nil {
					t.Fatalf("run returned nil, want an error\n%s", log.String())
				}
			case <-time.After(10 * time.Second):
				cancel()
				<-done
				t.Fatalf("run kept running, want it to refuse at once\n%s", log.String())
			}
		})
	}
}
