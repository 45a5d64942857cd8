package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/events"
)

const testSecret = "test-webhook-secret"

// testNow is the fixed clock of the tests that do not run a server.
var testNow = time.Unix(1_750_000_000, 0)

// fixture is a Backend on a settable clock, logging into a buffer the tests read.
type fixture struct {
	t   *testing.T
	b   *Backend
	now time.Time
	log *logBuffer
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{t: t, now: testNow, log: &logBuffer{}}
	b, err := New(Config{
		Secret: testSecret,
		Now:    func() time.Time { return f.now },
		Logger: slog.New(slog.NewJSONHandler(f.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	f.b = b
	return f
}

// signedRequest builds a POST as Switchboard sends it: the timestamp header and the
// signature of events.Sign over timestamp + "." + body.
func signedRequest(path, secret string, ts time.Time, body []byte) *http.Request {
	r := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	stamp := strconv.FormatInt(ts.Unix(), 10)
	r.Header.Set(events.HeaderTimestamp, stamp)
	r.Header.Set(events.HeaderSignature, events.Sign(secret, stamp, body))
	return r
}

// do serves r and returns the recorded answer.
func (f *fixture) do(r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	f.b.ServeHTTP(w, r)
	return w
}

// post sends body to path signed with the right secret at the fixture's now.
func (f *fixture) post(path string, body any) *httptest.ResponseRecorder {
	f.t.Helper()
	return f.do(signedRequest(path, testSecret, f.now, mustJSON(f.t, body)))
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	if raw, ok := v.(string); ok {
		return []byte(raw)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// wantStatus fails the test unless w has status; it returns the body decoded as JSON.
func wantStatus(t *testing.T, w *httptest.ResponseRecorder, status int) map[string]any {
	t.Helper()
	if w.Code != status {
		t.Fatalf("status %d, want %d; body %s", w.Code, status, w.Body)
	}
	var out map[string]any
	if w.Body.Len() > 0 && strings.HasPrefix(w.Header().Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
			t.Fatalf("answer is not a JSON object: %v: %s", err, w.Body)
		}
	}
	return out
}

// errorCode is the code of an {"error":{"code":...}} answer.
func errorCode(body map[string]any) string {
	e, _ := body["error"].(map[string]any)
	code, _ := e["code"].(string)
	return code
}

// logBuffer collects JSON log records; the tests read them back.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// records returns the log records whose message is msg.
func (l *logBuffer) records(t *testing.T, msg string) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(l.buf.Bytes()))
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("log line is not JSON: %s", sc.Bytes())
		}
		if rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}
