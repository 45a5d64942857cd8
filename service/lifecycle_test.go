package service_test

import (
	"strings"
	"testing"

	"github.com/switchboard-dev/switchboard/internal/testutil"
	"github.com/switchboard-dev/switchboard/service"
)

func TestServeReturnsOnlyWhenEveryGoroutineItStartedHasEnded(t *testing.T) {
	srv, _ := startRedis(t)
	a := startNode(t, onRedis(srv), "a")
	connect(t, a, "bob")
	connect(t, a, "ann")
	// What Serve starts: the HTTP server, the heartbeat, and a read loop per WebSocket.
	started := []string{
		"net/http.(*Server).Serve",
		"github.com/switchboard-dev/switchboard/service.(*Server).heartbeat",
		"github.com/lxzan/gws.(*Conn).ReadLoop",
	}
	for _, f := range started {
		if len(testutil.Goroutines(f)) == 0 {
			t.Fatalf("no goroutine in %s while the node runs: the check below would prove nothing", f)
		}
	}
	a.Stop()
	if left := testutil.Goroutines(started...); len(left) > 0 {
		t.Fatalf("%d goroutines outlived Serve:\n%s", len(left), strings.Join(left, "\n\n"))
	}
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
