package testutil

import (
	"runtime"
	"strings"
)

// Goroutines returns the stacks of the running goroutines that mention any of parts (a
// package path or a function, e.g. "net/http.(*Server).Serve"), for tests that check a
// part leaves no goroutine behind when it stops.
func Goroutines(parts ...string) []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		for _, p := range parts {
			if strings.Contains(g, p) {
				out = append(out, g)
				break
			}
		}
	}
	return out
}
