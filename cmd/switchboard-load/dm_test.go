package main

import (
	"context"
	"testing"

	"github.com/switchboard-dev/switchboard/service"
	"github.com/switchboard-dev/switchboard/tokens"
)

// The dm scenario against a node that requires tokens and an API key: every message is
// accepted, delivered once, in order, and timed.
func TestDMDeliversEveryMessageOnceInOrder(t *testing.T) {
	const secret, key = "load-test-secret", "load-test-key"
	verifier, err := tokens.New(context.Background(), tokens.Config{Secret: []byte(secret)})
	if err != nil {
		t.Fatal(err)
	}
	base := startNode(t, service.Config{Tokens: verifier, APIKey: key})

	code, res := runTool(t, "dm", "--url", base, "--jwt-secret", secret, "--api-key", key,
		"--users", "20", "--count", "200", "--publishers", "4", "--payload-bytes", "256")

	if code != exitPass || !res.Passed {
		t.Fatalf("exit %d, passed %v, failures %v", code, res.Passed, res.Failures)
	}
	if c := res.Connect; c.OK != 20 || c.Failed != 0 || c.PerSecond <= 0 {
		t.Errorf("connect: %+v", c)
	}
	if s := res.Send; s.Requests != 200 || s.Accepted != 200 || s.Errors != 0 || s.AcceptedPerSecond <= 0 {
		t.Errorf("send: %+v", s)
	}
	d := res.Delivery
	if d.Expected != 200 || d.Delivered != 200 || d.Lost != 0 || d.Duplicated != 0 || d.OutOfOrder != 0 || d.Unexpected != 0 || d.PerSecond <= 0 {
		t.Errorf("delivery: %+v", d)
	}
	checkLatency(t, "delivery latency", d.Latency, 200)
	checkLatency(t, "HTTP round trip", res.Send.Latency, 200)
	if res.Tool == nil || res.Tool.CPUSeconds <= 0 {
		t.Errorf("the tool's own CPU was not measured: %+v", res.Tool)
	}
	if res.Sessions != nil {
		t.Errorf("connections were closed or sent unexpected frames: %+v", res.Sessions)
	}
}
