package service_test

import (
	"strings"
	"testing"

	"github.com/switchboard-dev/switchboard/internal/testutil"
	"github.com/switchboard-dev/switchboard/service"
)

func TestServeReturnsOnlyWhenEveryGoroutineItStartedHasEnded(t *testing.T) {
	// What Serve starts: the HTTP server, the heartbeat, and a read loop per WebSocket.
	started := []string{
		"net/http.(*Server).Serve",
		"github.com/switchboard-dev/switchboard/service.(*Server).heartbeat",
		"github.com/lxzan/gws.(*Conn).ReadLoop",
	}
	// Earlier tests may leave goroutines of their own behind (a connection of a stopped
	// server still reading a stalled body until its read timeout): only this node's count.
	earlier := map[string]bool{}
	for _, g := range testutil.Goroutines(started...) {
		earlier[goroutineID(g)] = true
	}
	srv, _ := startRedis(t)
	a := startNode(t, onRedis(srv), "a")
	connect(t, a, "bob")
	connect(t, a, "ann")
	for _, f := range started {
		if len(nodeGoroutines(earlier, f)) == 0 {
			t.Fatalf("no goroutine in %s while the node runs: the check below would prove nothing", f)
		}
	}
	a.Stop()
	if left := nodeGoroutines(earlier, started...); len(left) > 0 {
		t.Fatalf("%d goroutines outlived Serve:\n%s", len(left), strings.Join(left, "\n\n"))
	}
}

// nodeGoroutines returns the goroutines in any of the functions named by parts that are not
// in earlier and were not started by the test's own WebSocket clients (whose read loops end
// when they read the server's close, a moment after Serve returns).
func nodeGoroutines(earlier map[string]bool, parts ...string) []string {
	var out []string
	for _, g := range testutil.Goroutines(parts...) {
		if earlier[goroutineID(g)] || strings.Contains(g, "created by github.com/switchboard-dev/switchboard/internal/wsclient.") {
			continue
		}
		out = append(out, g)
	}
	return out
}

// goroutineID returns the number of a goroutine from its stack ("goroutine 7 [running]:").
func goroutineID(stack string) string {
	if f := strings.Fields(stack); len(f) > 1 {
		return f[1]
	}
	return ""
}

func TestServersInOneProcessOnTheirOwnRegistriesOrSharingOne(t *testing.T) {
	srv, _ := startRedis(t)
	own := func(o *nodeOptions) { o.service.Registerer, o.subscriptions.Observer = nil, nil }
	a := startNode(t, onRedis(srv), "a", own)
	b := startNode(t, onRedis(srv), "b", own)
	connect(t, a, "bob")
	connect(t, b, "ann")
	connect(t, b, "cid")
	if got := metric(t, a, "switchboard_connections"); got != 1 {
		t.Errorf("a's registry counts %v connections, want its own 1", got)
	}
	if got := metric(t, b, "switchboard_connections"); got != 2 {
		t.Errorf("b's registry counts %v connections, want its own 2", got)
	}

	shared := service.NewRegistry()
	both := func(o *nodeOptions) {
		o.service.Registerer, o.subscriptions.Observer = shared, service.NewHubMetrics(shared)
	}
	c := startNode(t, onRedis(srv), "c", both) // a second server on one registry must not panic
	d := startNode(t, onRedis(srv), "d", both)
	sendDM(t, c, "bob", `1`)
	sendDM(t, d, "bob", `2`)
	for _, n := range []*node{c, d} {
		if got := metric(t, n, `switchboard_messages_in_total{kind="direct",source="http"}`); got != 2 {
			t.Errorf("node %s: messages_in %v, want the 2 of both servers on the shared registry", n.name, got)
		}
		if got := metric(t, n, `switchboard_publish_seconds_count`); got != 2 {
			t.Errorf("node %s: publish_seconds_count %v, want the 2 of both hubs", n.name, got)
		}
	}
}
