package main

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/events"
	"github.com/switchboard-dev/switchboard/hooks"
)

const hookSecret = "load-hook-secret"

// freeAddr returns a loopback address nothing listens on, for a served backend that a
// node must be told about before the tool starts it.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// hookClient is the node's side of the hooks, pointed at a backend on addr and signing
// with secret, as --rpc-url, --authorize-url and --webhook-secret build it.
func hookClient(t *testing.T, addr, secret string, rpc, authorize bool) *hooks.Client {
	t.Helper()
	cfg := hooks.Config{Secret: secret, Node: "load-test", Timeout: 5 * time.Second}
	if rpc {
		cfg.RPCURL = "http://" + addr + "/rpc"
	}
	if authorize {
		cfg.AuthorizeURL = "http://" + addr + "/authorize"
	}
	c, err := hooks.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// The served backend answers requests signed with its secret, each hook its own way, and
// refuses every other request with 401 (or 405), counting it: a refusal fails the run.
func TestServedBackendChecksEverySignature(t *testing.T) {
	b, err := startBackend(backendConfig{serve: true, addr: "127.0.0.1:0", secret: hookSecret, cacheS: 60})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.close)
	post := func(path, body string, sign func(h http.Header)) (int, string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, b.url(path), strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		sign(req.Header)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	signed := func(secret string, at time.Time, body string) func(http.Header) {
		return func(h http.Header) {
			ts := strconv.FormatInt(at.Unix(), 10)
			h.Set(events.HeaderTimestamp, ts)
			h.Set(events.HeaderSignature, events.Sign(secret, ts, []byte(body)))
		}
	}
	const rpcBody = `{"user":"a","method":"m","data":null,"node":"n"}`
	const authBody = `{"action":"send","user":"a","to":"b"}`

	status, answer := post("/rpc", rpcBody, signed(hookSecret, time.Now(), rpcBody))
	ns, ok := backendTime([]byte(answer))
	if status != 200 || !ok || ns <= 0 {
		t.Errorf("signed rpc: %d %q, want 200 with the handler's time", status, answer)
	}
	if status, answer := post("/authorize", authBody, signed(hookSecret, time.Now(), authBody)); status != 200 || answer != `{"allow":true,"cache_s":60}` {
		t.Errorf("signed authorize: %d %q", status, answer)
	}

	refusals := []struct {
		name string
		path string
		sign func(http.Header)
	}{
		{"an unsigned request is refused", "/rpc", func(http.Header) {}},
		{"a request signed with another secret is refused", "/rpc", signed("other", time.Now(), rpcBody)},
		{"a signature over another body is refused", "/authorize", signed(hookSecret, time.Now(), rpcBody)},
		{"a timestamp ten minutes old is refused", "/rpc", signed(hookSecret, time.Now().Add(-10*time.Minute), rpcBody)},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			body := rpcBody
			if tc.path == "/authorize" {
				body = authBody
			}
			if status, _ := post(tc.path, body, tc.sign); status != http.StatusUnauthorized {
				t.Errorf("status %d, want 401", status)
			}
		})
	}
	resp, err := http.Get(b.url("/rpc"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d, want 405", resp.StatusCode)
	}
	r := b.report()
	if r.RPCCalls != 1 || r.AuthorizeCalls != 1 || r.Refused != int64(len(refusals))+1 || r.Handler.Count != 1 {
		t.Errorf("report %+v: want 1 rpc, 1 authorize, %d refused", r, len(refusals)+1)
	}
}

func TestRefsAndAnswersParse(t *testing.T) {
	frame := appendRPCFrame(nil, "load.echo", 3, 1234, 64)
	var f struct {
		Type, Method, Ref string
		Data              struct{ T, S int64 }
	}
	if err := json.Unmarshal(frame, &f); err != nil || f.Type != "rpc" || f.Method != "load.echo" || f.Ref != "3.1234" || f.Data.S != 1234 || f.Data.T <= 0 {
		t.Errorf("frame %s decodes to %+v (%v)", frame, f, err)
	}
	for _, tc := range []struct {
		ref       string
		slot      int
		seq       int64
		ok        bool
		sentences string
	}{
		{"3.1234", 3, 1234, true, "a slot and a sequence"},
		{"0.0", 0, 0, true, "zeros"},
		{"", 0, 0, false, "empty"},
		{"3", 0, 0, false, "no dot"},
		{".5", 0, 0, false, "no slot"},
		{"-1.5", 0, 0, false, "a negative slot"},
		{"a.b", 0, 0, false, "not numbers"},
	} {
		slot, seq, ok := parseRef(tc.ref)
		if ok != tc.ok || (ok && (slot != tc.slot || seq != tc.seq)) {
			t.Errorf("%s: parseRef(%q) = %d, %d, %v", tc.sentences, tc.ref, slot, seq, ok)
		}
	}
	if ns, ok := backendTime([]byte(`{"backend_ns":42}`)); !ok || ns != 42 {
		t.Errorf("backendTime: %d %v", ns, ok)
	}
	for _, other := range []string{`{"ok":true}`, `null`, `{"backend_ns":}`} {
		if _, ok := backendTime([]byte(other)); ok {
			t.Errorf("backendTime(%s) read a time", other)
		}
	}
}
