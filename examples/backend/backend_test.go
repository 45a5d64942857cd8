package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/events"
)

// validBodies are requests each signed endpoint accepts; the refusal tests send the same
// bodies with a broken signature and check that the backend did not act on them.
func validBodies(t *testing.T, f *fixture) map[string][]byte {
	cookie := signSession(f.b.cfg.SessionKey, "alice", f.now.Add(time.Hour))
	return map[string][]byte{
		"/hooks/connect":   mustJSON(t, map[string]any{"headers": map[string]string{"Cookie": "session=" + cookie}, "query": map[string]string{}, "remote_addr": "192.0.2.1"}),
		"/hooks/authorize": mustJSON(t, map[string]string{"action": "join", "user": "alice", "room": "team.red.general"}),
		"/hooks/rpc":       mustJSON(t, map[string]any{"user": "alice", "method": "whoami", "data": nil, "node": "n1"}),
		"/events":          mustJSON(t, map[string]any{"events": []events.Event{{ID: "ev-1", Type: events.UserOnline, User: "alice", Node: "n1", Time: f.now}}}),
	}
}

func TestSignedEndpointsAnswerWhenSigned(t *testing.T) {
	f := newFixture(t)
	want := map[string]int{"/hooks/connect": 200, "/hooks/authorize": 200, "/hooks/rpc": 200, "/events": 204}
	for path, body := range validBodies(t, f) {
		w := f.do(signedRequest(path, testSecret, f.now, body))
		if w.Code != want[path] {
			t.Errorf("%s: status %d, want %d; body %s", path, w.Code, want[path], w.Body)
		}
	}
}

func TestSignatureRefusals(t *testing.T) {
	stamp := func(ts time.Time) string { return strconv.FormatInt(ts.Unix(), 10) }
	cases := []struct {
		name string
		// edit breaks a correctly signed request.
		edit func(r *http.Request, body []byte) *http.Request
	}{
		{"no signature header", func(r *http.Request, _ []byte) *http.Request {
			r.Header.Del(events.HeaderSignature)
			return r
		}},
		{"no timestamp header", func(r *http.Request, _ []byte) *http.Request {
			r.Header.Del(events.HeaderTimestamp)
			return r
		}},
		{"a signature made with another secret", func(r *http.Request, body []byte) *http.Request {
			r.Header.Set(events.HeaderSignature, events.Sign("another secret", r.Header.Get(events.HeaderTimestamp), body))
			return r
		}},
		{"a stale timestamp, correctly signed", func(r *http.Request, body []byte) *http.Request {
			return signedRequest(r.URL.Path, testSecret, testNow.Add(-6*time.Minute), body)
		}},
		{"a timestamp from the future, correctly signed", func(r *http.Request, body []byte) *http.Request {
			return signedRequest(r.URL.Path, testSecret, testNow.Add(6*time.Minute), body)
		}},
		{"the timestamp changed after signing", func(r *http.Request, _ []byte) *http.Request {
			r.Header.Set(events.HeaderTimestamp, stamp(testNow.Add(-time.Second)))
			return r
		}},
		{"the body changed after signing", func(r *http.Request, body []byte) *http.Request {
			changed := bytes.Replace(body, []byte("alice"), []byte("carol"), 1)
			if bytes.Equal(changed, body) {
				panic("the body names no alice to change")
			}
			nr := httptest.NewRequest(http.MethodPost, r.URL.Path, bytes.NewReader(changed))
			nr.Header = r.Header.Clone()
			return nr
		}},
		{"a signature without its sha256= prefix", func(r *http.Request, _ []byte) *http.Request {
			r.Header.Set(events.HeaderSignature, strings.TrimPrefix(r.Header.Get(events.HeaderSignature), "sha256="))
			return r
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			for path, body := range validBodies(t, f) {
				w := f.do(c.edit(signedRequest(path, testSecret, f.now, body), body))
				if code := errorCode(wantStatus(t, w, http.StatusUnauthorized)); code != "bad_signature" {
					t.Errorf("%s: code %q, want bad_signature", path, code)
				}
			}
			// Nothing was acted on: no event handled, no hook answered.
			for _, msg := range []string{"event", "connect", "authorize", "rpc"} {
				if n := len(f.log.records(t, msg)); n != 0 {
					t.Errorf("%d %q log records after refused requests", n, msg)
				}
			}
			// The refused event was not remembered as seen: sent properly, it is handled.
			f.do(signedRequest("/events", testSecret, f.now, validBodies(t, f)["/events"]))
			if n := len(f.log.records(t, "event")); n != 1 {
				t.Errorf("the event was handled %d times once correctly signed, want 1", n)
			}
		})
	}
}

func TestTimestampWithinToleranceAccepted(t *testing.T) {
	f := newFixture(t)
	body := validBodies(t, f)["/hooks/authorize"]
	for _, skew := range []time.Duration{-4 * time.Minute, 4 * time.Minute} {
		wantStatus(t, f.do(signedRequest("/hooks/authorize", testSecret, f.now.Add(skew), body)), http.StatusOK)
	}
}

func TestBodyOverTheLimitRefused(t *testing.T) {
	f := newFixture(t)
	body := []byte(`{"user":"alice","method":"echo","data":"` + strings.Repeat("x", maxHookBody) + `"}`)
	w := f.do(signedRequest("/hooks/rpc", testSecret, f.now, body))
	if code := errorCode(wantStatus(t, w, http.StatusRequestEntityTooLarge)); code != "too_large" {
		t.Errorf("code %q, want too_large", code)
	}
	if n := len(f.log.records(t, "rpc")); n != 0 {
		t.Errorf("an oversized call was handled (%d rpc records)", n)
	}
}

func TestWrongMethodRefused(t *testing.T) {
	f := newFixture(t)
	for _, path := range []string{"/hooks/connect", "/hooks/authorize", "/hooks/rpc", "/events", "/logout"} {
		w := f.do(httptest.NewRequest(http.MethodGet, path, nil))
		if w.Code != http.StatusMethodNotAllowed {
			t.Errorf("GET %s: status %d, want 405", path, w.Code)
		}
	}
}

func TestNewRequiresASecret(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Fatal("New without a secret succeeded")
	}
}
