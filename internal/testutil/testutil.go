// Package testutil holds the small helpers the integration tests of every package share.
package testutil

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
	"time"
)

// WaitFor polls cond until it holds, failing the test if d passes first: tests wait for
// conditions with a deadline, never by sleeping a fixed time.
func WaitFor(t testing.TB, d time.Duration, cond func() bool, what string) {
	t.Helper()
	Eventually(t, d, func() error {
		if cond() {
			return nil
		}
		return fmt.Errorf("waiting for %s", what)
	})
}

// Eventually polls check until it returns nil, failing the test with check's last error if
// d passes first. It is WaitFor for conditions whose failure is worth describing (what was
// seen instead of what was wanted).
func Eventually(t testing.TB, d time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s: %v", d, err)
		}
		time.Sleep(5 * time.Millisecond) // the polling interval
	}
}

// StaysOpen fails the test if done closes before d has passed: it watches the whole window
// rather than looking once, so a close anywhere in it is caught.
func StaysOpen(t testing.TB, done <-chan struct{}, d time.Duration, what string) {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-done:
		t.Fatalf("%s closed before %s had passed", what, d)
	case <-timer.C:
	}
}

// LockedBuffer collects output written from several goroutines (a process's log) and read
// by the test.
type LockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *LockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
