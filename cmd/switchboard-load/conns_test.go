package main

import (
	"os"
	"strconv"
	"testing"

	"github.com/switchboard-dev/switchboard/service"
)

// The conns scenario: every connection is welcomed and held, and the server's memory is
// read from /proc (the node runs in the test process, so its pid is ours).
func TestConnsOpensAndHoldsEveryConnection(t *testing.T) {
	base := startNode(t, service.Config{})

	code, res := runTool(t, "conns", "--url", base, "--conns", "50", "--dialers", "8",
		"--hold", "100ms", "--pid", strconv.Itoa(os.Getpid()))

	if code != exitPass || !res.Passed {
		t.Fatalf("exit %d, passed %v, failures %v", code, res.Passed, res.Failures)
	}
	c := res.Connect
	if c.Attempted != 50 || c.OK != 50 || c.Failed != 0 || c.Dropped != 0 || c.PerSecond <= 0 {
		t.Errorf("connect: %+v", c)
	}
	checkLatency(t, "dial to welcome", c.Latency, 50)
	if s := res.Server; s == nil || s.Error != "" || s.RSSAfterMB <= 0 || s.CPUPerOpMicros <= 0 {
		t.Errorf("server process not measured: %+v", s)
	}
	if res.Send != nil || res.Delivery != nil {
		t.Errorf("conns sends no messages, got %+v %+v", res.Send, res.Delivery)
	}
}
