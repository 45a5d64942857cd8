package service

import (
	"net/http/httptest"
	"testing"
)

// The dev-mode guard runs on every request, the API's hot path included: it must not
// allocate.
func TestDevModeGuardDoesNotAllocate(t *testing.T) {
	s := &Server{cfg: Config{DevHosts: []string{"switchboard"}}}
	r := httptest.NewRequest("POST", "/v1/users/bob/messages", nil)
	r.Host = "127.0.0.1:8080"
	r.Header.Set("Origin", "http://127.0.0.1:8080")
	r.Header.Set("Sec-Fetch-Site", "same-origin")
	ok := false
	allocs := testing.AllocsPerRun(200, func() {
		ok = s.devHostAllowed(r.Host) && !crossOrigin(r)
	})
	if !ok {
		t.Fatal("a same-origin request on 127.0.0.1 was refused: the budget measured nothing")
	}
	if allocs > 0 {
		t.Fatalf("%v allocations per request, want 0", allocs)
	}
}
