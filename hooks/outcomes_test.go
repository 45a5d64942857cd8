package hooks

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// reply is how a test's backend answers every request.
type reply struct {
	status      int
	body        string
	hang        bool // never answers: the call times out
	redirect    bool // 302 to another backend, which must never be asked
	unreachable bool // nothing listens on the hook's port
}

// Limits of the outcome tables' clients: a short timeout for the hanging cases, a small
// body limit for the oversized ones.
const (
	tableTimeout  = time.Second
	tableBodySize = 1024
)

// serve starts a backend answering with rp and returns the hook URL and the backend (nil
// for an unreachable one). The backend's signature checks and the redirect target's
// silence are checked at cleanup.
func (rp reply) serve(t *testing.T) (string, *backend) {
	t.Helper()
	if rp.unreachable {
		return closedURL(t), nil
	}
	var b *backend
	switch {
	case rp.hang:
		b = newBackend(t, func(_ http.ResponseWriter, r *http.Request, _ []byte) { b.hang(r) })
	case rp.redirect:
		target := newBackend(t, answer(http.StatusOK, `{"allow":true,"user":"mallory"}`))
		t.Cleanup(func() {
			if n := target.calls.Load(); n != 0 {
				t.Errorf("the redirect was followed: its target got %d requests", n)
			}
		})
		b = newBackend(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
			http.Redirect(w, r, target.url(), http.StatusFound)
		})
	default:
		b = newBackend(t, answer(rp.status, rp.body))
	}
	t.Cleanup(func() { b.checkSigned(t) })
	return b.url(), b
}

// padded returns a JSON object of exactly size bytes: head's members and a filler.
func padded(head string, size int) string {
	s := "{" + head + `,"pad":""}`
	return s[:len(s)-2] + strings.Repeat("x", size-len(s)) + `"}`
}

// checkOutcome checks that exactly one call was counted, with outcome, and timed.
func checkOutcome(t *testing.T, reg prometheus.Gatherer, hook Hook, outcome string) {
	t.Helper()
	total := 0.0
	for _, o := range outcomeNames {
		total += calls(t, reg, hook, o)
	}
	if got := calls(t, reg, hook, outcome); got != 1 || total != 1 {
		t.Errorf("calls{hook=%s,outcome=%s} = %v of %v calls counted, want 1 of 1", hook, outcome, got, total)
	}
	h := metric(t, reg, "switchboard_hook_duration_seconds", map[string]string{"hook": string(hook)})
	if h.GetHistogram().GetSampleCount() != 1 {
		t.Errorf("duration{hook=%s} has %d samples, want 1", hook, h.GetHistogram().GetSampleCount())
	}
}

func TestPadded(t *testing.T) {
	for _, n := range []int{30, 1024, 1025} {
		if s := padded(`"allow":true`, n); len(s) != n || !strings.HasSuffix(s, `x"}`) {
			t.Fatalf("padded(%d) is %d bytes: %s", n, len(s), s)
		}
	}
}
