package main

import (
	"strings"
	"testing"

	"github.com/switchboard-dev/switchboard/service"
)

// The rpc scenario with --frame history makes its users members of a room, fills the
// room's history, and counts only full pages of the size asked as answered.
func TestHistoryFramesAreAnsweredWithFullPages(t *testing.T) {
	base := startNode(t, service.Config{})
	code, res := runTool(t, "rpc", "--frame", "history", "--history-limit", "20", "--url", base,
		"--conns", "12", "--in-flight", "2", "--count", "120")
	if code != exitPass || !res.Passed {
		t.Fatalf("exit %d, passed %v, failures %v, warnings %v", code, res.Passed, res.Failures, res.Warnings)
	}
	c := res.RPC
	if c == nil || c.Calls != 120 || c.OK != 120 || c.Errors != 0 || res.Backend != nil {
		t.Fatalf("history: %+v, backend %+v", c, res.Backend)
	}
	checkLatency(t, "round trip", c.Latency, 120)
}

// Bad --frame, --history-limit and --room values are refused before anything runs.
func TestHistoryFrameFlagsAreChecked(t *testing.T) {
	for _, args := range [][]string{
		{"--frame", "history", "--history-limit", "0"},
		{"--frame", "history", "--history-limit", "101"},
		{"--frame", "history", "--room", "no spaces"},
		{"--frame", "histories"},
	} {
		var out strings.Builder
		if _, err := parseArgs(append([]string{"rpc"}, args...), &out); err == nil {
			t.Errorf("%v: accepted", args)
		}
	}
}

func TestAppendHistoryFrame(t *testing.T) {
	got := string(appendHistoryFrame(nil, "lobby", 50, 3, 17))
	if want := `{"type":"history","room":"lobby","limit":50,"ref":"3.17"}`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}
