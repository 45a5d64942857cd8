package main

import (
	"context"
	"testing"

	"github.com/switchboard-dev/switchboard/service"
	"github.com/switchboard-dev/switchboard/tokens"
)

// dm --via ws on a node that checks permissions and has an authorize hook (the tool's
// backend, cache_s 60): tokens granting dm never ask the hook; tokens without a grant ask
// it once per sender and recipient, and the cached answer serves the rest; HTTP sends never
// ask it. Every message is delivered once, in order, whichever way it was allowed.
func TestDMOverWebSocketsWithGrantsAndTheAuthorizeHook(t *testing.T) {
	const secret, key = "load-test-secret", "load-test-key"
	verifier, err := tokens.New(context.Background(), tokens.Config{Secret: []byte(secret)})
	if err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	base := startNode(t, service.Config{Tokens: verifier, APIKey: key, Hooks: hookClient(t, addr, hookSecret, false, true)})
	const users, count = 10, 200

	for _, tc := range []struct {
		name      string
		args      []string
		authorize int64 // hook calls
	}{
		{"tokens granting dm never ask the hook", []string{"--via", "ws", "--jwt-dm", "*"}, 0},
		{"without a grant the hook is asked once per pair, then its answer is cached", []string{"--via", "ws"}, users},
		{"HTTP sends never ask the hook", []string{"--via", "http"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"dm", "--url", base, "--jwt-secret", secret, "--api-key", key,
				"--users", "10", "--count", "200", "--publishers", "4",
				"--serve-backend", "--backend-addr", addr, "--webhook-secret", hookSecret}, tc.args...)
			code, res := runTool(t, args...)
			if code != exitPass || !res.Passed {
				t.Fatalf("exit %d, passed %v, failures %v, warnings %v", code, res.Passed, res.Failures, res.Warnings)
			}
			if s := res.Send; s.Requests != count || s.Accepted != count || s.Errors != 0 {
				t.Errorf("send: %+v", s)
			}
			d := res.Delivery
			if d.Delivered != count || d.Lost != 0 || d.Duplicated != 0 || d.OutOfOrder != 0 || d.Unexpected != 0 {
				t.Errorf("delivery: %+v", d)
			}
			checkLatency(t, "delivery latency", d.Latency, count)
			if b := res.Backend; b.AuthorizeCalls != tc.authorize || b.Refused != 0 {
				t.Errorf("backend: %+v, want %d authorize calls", b, tc.authorize)
			}
			if res.Sessions != nil {
				t.Errorf("sessions: %+v", res.Sessions)
			}
		})
	}
}

// Without a grant and without a hook, every client DM is refused with forbidden: counted
// as errors, nothing accepted, and the run fails.
func TestDMOverWebSocketsRefusedWithoutAGrant(t *testing.T) {
	verifier, err := tokens.New(context.Background(), tokens.Config{Secret: []byte("s")})
	if err != nil {
		t.Fatal(err)
	}
	base := startNode(t, service.Config{Tokens: verifier})
	code, res := runTool(t, "dm", "--url", base, "--jwt-secret", "s", "--via", "ws",
		"--users", "3", "--count", "12", "--publishers", "2", "--grace", "100ms")
	if code != exitFail || res.Passed {
		t.Errorf("exit %d, passed %v", code, res.Passed)
	}
	if s := res.Send; s.Requests != 12 || s.Accepted != 0 || s.ErrorsBy["forbidden"] != 12 {
		t.Errorf("send: %+v, want 12 forbidden", s)
	}
	if d := res.Delivery; d.Delivered != 0 {
		t.Errorf("delivery: %+v", d)
	}
}
