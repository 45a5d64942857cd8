package main

import (
	"os"
	"strconv"
	"testing"

	"github.com/switchboard-dev/switchboard/service"
	"github.com/switchboard-dev/switchboard/subscriptions"
)

// The fanout scenario: every post reaches every member once, in order, and the room is
// left empty afterwards.
func TestFanoutReachesEveryMemberOnce(t *testing.T) {
	testFanoutReachesEveryMemberOnce(t, startNode(t, service.Config{}))
}

// A room of 20 members with a threshold of 5 is big: one copy per post, fanned out on read.
func TestFanoutToABigRoomReachesEveryMemberOnce(t *testing.T) {
	testFanoutReachesEveryMemberOnce(t, startNodeHub(t, service.Config{}, subscriptions.Config{BigRoomThreshold: 5}))
}

func testFanoutReachesEveryMemberOnce(t *testing.T, base string) {

	code, res := runTool(t, "fanout", "--url", base, "--members", "20", "--count", "30",
		"--publishers", "2", "--room", "lobby", "--pid", strconv.Itoa(os.Getpid()))

	if code != exitPass || !res.Passed {
		t.Fatalf("exit %d, passed %v, failures %v, warnings %v", code, res.Passed, res.Failures, res.Warnings)
	}
	if s := res.Send; s.Requests != 30 || s.Accepted != 30 || s.RecipientsMin != 20 || s.RecipientsMax != 20 {
		t.Errorf("send: %+v", s)
	}
	d := res.Delivery
	if d.Expected != 600 || d.Delivered != 600 || d.Lost != 0 || d.Duplicated != 0 || d.OutOfOrder != 0 || d.Incomplete != 0 {
		t.Errorf("delivery: %+v", d)
	}
	checkLatency(t, "delivery latency", d.Latency, 600)
	checkLatency(t, "post to last member", *d.Complete, 30)
	if d.Complete.P50 < d.Latency.P50 {
		t.Errorf("the last member's delivery (p50 %v ms) came before the median delivery (p50 %v ms)", d.Complete.P50, d.Latency.P50)
	}
	if res.Server == nil || res.Server.Error != "" || res.Server.CPUPerOpMicros <= 0 {
		t.Errorf("server process not measured: %+v", res.Server)
	}

	// The tool empties the room it filled.
	status, body := get(t, base+"/v1/rooms/lobby/members")
	if status != 200 || string(body) != `{"members":[]}`+"\n" {
		t.Errorf("room after the run: %d %s", status, body)
	}
}
