package main

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/internal/wsclient"
)

// TestRunWiresLimitsAndQuotas checks that the flags reach the limiter and the hub, on the
// embedded Redis (whose Lua runs the limiter's and the join's scripts too).
func TestRunWiresLimitsAndQuotas(t *testing.T) {
	p := startProcess(t, noEnv, "--user-send-limit", "1/m,1", "--user-connect-limit", "1/m,2", "--max-rooms-per-user", "1")
	c, w := p.dial(t, "user=alice")
	if w.Type != "welcome" {
		t.Fatalf("first frame %s", w.Raw)
	}
	expect := func(frame, typ, code string) {
		t.Helper()
		if err := c.SendRaw([]byte(frame)); err != nil {
			t.Fatal(err)
		}
		f, err := c.NextWithin(10 * time.Second)
		if err == nil && f.Type == "message" && f.To != "" { // the copy of alice's own DM
			f, err = c.NextWithin(10 * time.Second)
		}
		if err != nil || f.Type != typ || f.Code != code {
			t.Fatalf("%s: %s, %v; want %s %s", frame, f.Raw, err, typ, code)
		}
	}
	expect(`{"type":"send","to":"bob","data":1}`, "ack", "")
	expect(`{"type":"send","to":"bob","data":2}`, "error", "rate_limited")
	expect(`{"type":"join","room":"one"}`, "ack", "")
	expect(`{"type":"join","room":"two"}`, "error", "quota_exceeded")
	p.dial(t, "user=alice")
	_, err := wsclient.Dial("ws"+strings.TrimPrefix(p.base, "http")+"/ws?user=alice", wsclient.Options{})
	var refused *wsclient.ErrRefused
	if !errors.As(err, &refused) || refused.Status != http.StatusTooManyRequests {
		t.Fatalf("a third connection within --user-connect-limit 1/m,2: %v, want 429", err)
	}
}
