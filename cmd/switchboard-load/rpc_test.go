package main

import (
	"context"
	"strings"
	"testing"

	"github.com/switchboard-dev/switchboard/service"
	"github.com/switchboard-dev/switchboard/tokens"
)

// The rpc scenario against a real node whose --rpc-url is the tool's own backend: every
// call is answered, every request reached the backend signed, and the overhead is the
// round trip less the backend's time, so it is measured for each call and is below it.
func TestRPCCallsAreAnsweredAndTheirOverheadMeasured(t *testing.T) {
	addr := freeAddr(t)
	base := startNode(t, service.Config{Hooks: hookClient(t, addr, hookSecret, true, false)})

	code, res := runTool(t, "rpc", "--url", base, "--conns", "6", "--in-flight", "3", "--count", "300",
		"--conn-rate", "0", "--serve-backend", "--backend-addr", addr, "--webhook-secret", hookSecret,
		"--backend-delay", "1ms")

	if code != exitPass || !res.Passed {
		t.Fatalf("exit %d, passed %v, failures %v, warnings %v", code, res.Passed, res.Failures, res.Warnings)
	}
	c := res.RPC
	if c == nil || c.Conns != 6 || c.InFlight != 3 || c.Calls != 300 || c.OK != 300 || c.Errors != 0 || c.PerSecond <= 0 || c.Unmeasured != 0 {
		t.Fatalf("rpc: %+v", c)
	}
	checkLatency(t, "round trip", c.Latency, 300)
	if c.Overhead.Count != 300 || c.Overhead.P50 >= c.Latency.P50 {
		t.Errorf("overhead %+v not below the round trip %+v", c.Overhead, c.Latency)
	}
	// The backend slept 1 ms in each call: the round trip holds it, the overhead does not.
	if c.Latency.P50 < 1 {
		t.Errorf("round trip p50 %.3f ms is below the backend's 1 ms delay", c.Latency.P50)
	}
	b := res.Backend
	if b == nil || b.RPCCalls != 300 || b.AuthorizeCalls != 0 || b.Refused != 0 || b.Handler.P50 < 1 {
		t.Errorf("backend: %+v", b)
	}
}

// A paced run keeps its rate, and --conn-rate caps each connection under a node's frame
// limit, so that no connection is refused or closed however many calls are in flight.
func TestRPCPacedRunStaysUnderTheFrameLimit(t *testing.T) {
	addr := freeAddr(t)
	base := startNode(t, service.Config{Hooks: hookClient(t, addr, hookSecret, true, false)})

	// 2 connections × 16 in flight could send far more than 50 frames/s each; the cap
	// keeps them at 45/s, so 150 calls take at least 150/90 s.
	code, res := runTool(t, "rpc", "--url", base, "--conns", "2", "--in-flight", "16", "--count", "150",
		"--serve-backend", "--backend-addr", addr, "--webhook-secret", hookSecret)

	if code != exitPass || !res.Passed {
		t.Fatalf("exit %d, passed %v, failures %v, warnings %v", code, res.Passed, res.Failures, res.Warnings)
	}
	if c := res.RPC; c.OK != 150 || c.Errors != 0 || len(c.Closes) != 0 || c.Seconds < 1.5 || c.PerSecond > 95 {
		t.Errorf("rpc: %+v; want 150 results at no more than 2 × 45/s", c)
	}
}

// Refusals are counted, not hidden: a node whose secret is not the backend's gets 401s
// (rpc_failed 401 on every call, and the backend's refusals fail the run), and a node
// without --rpc-url answers not_enabled.
func TestRPCRefusalsFailTheRun(t *testing.T) {
	t.Run("a node signing with another secret", func(t *testing.T) {
		addr := freeAddr(t)
		base := startNode(t, service.Config{Hooks: hookClient(t, addr, "not-the-secret", true, false)})
		code, res := runTool(t, "rpc", "--url", base, "--conns", "2", "--in-flight", "2", "--count", "20",
			"--serve-backend", "--backend-addr", addr, "--webhook-secret", hookSecret)
		if code != exitFail || res.Passed {
			t.Errorf("exit %d, passed %v: a run whose every call failed must fail", code, res.Passed)
		}
		if c := res.RPC; c.Calls != 20 || c.OK != 0 || c.ErrorsBy["rpc_failed 401"] != 20 {
			t.Errorf("rpc: %+v, want 20 calls failed with rpc_failed 401", c)
		}
		if b := res.Backend; b.Refused != 20 || b.RPCCalls != 0 {
			t.Errorf("backend: %+v, want 20 refused", b)
		}
		if f := strings.Join(res.Failures, "\n"); !strings.Contains(f, "refused 20 requests") || !strings.Contains(f, "no rpc call was answered") {
			t.Errorf("failures %q", res.Failures)
		}
	})
	t.Run("a node without an rpc hook", func(t *testing.T) {
		verifier, err := tokens.New(context.Background(), tokens.Config{Secret: []byte("s")})
		if err != nil {
			t.Fatal(err)
		}
		base := startNode(t, service.Config{Tokens: verifier})
		code, res := runTool(t, "rpc", "--url", base, "--jwt-secret", "s", "--conns", "1", "--in-flight", "1", "--count", "5")
		if code != exitFail || res.Passed || res.RPC.ErrorsBy["not_enabled"] != 5 || res.RPC.OK != 0 || res.Backend != nil {
			t.Errorf("exit %d, rpc %+v, backend %+v: want 5 not_enabled and a failed run", code, res.RPC, res.Backend)
		}
	})
}
