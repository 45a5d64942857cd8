package main

import (
	"strings"
	"testing"
)

// A run fails when a guarantee breaks, and only warns about capacity signals.
func TestJudge(t *testing.T) {
	ok := func() *Result {
		return &Result{
			Scenario: "dm",
			Connect:  &ConnectReport{Attempted: 10, OK: 10},
			Send:     &SendReport{Requests: 100, Accepted: 100, AcceptedPerSecond: 100},
			Delivery: &DeliveryReport{Expected: 100, Delivered: 100},
		}
	}
	tests := []struct {
		name     string
		change   func(r *Result)
		pass     bool
		contains string
	}{
		{"everything delivered once in order passes", func(*Result) {}, true, ""},
		{"a lost message fails", func(r *Result) { r.Delivery.Lost = 1 }, false, "1 deliveries lost"},
		{"a duplicate fails", func(r *Result) { r.Delivery.Duplicated = 2 }, false, "2 deliveries duplicated"},
		{"reordering fails", func(r *Result) { r.Delivery.OutOfOrder = 3 }, false, "3 deliveries out of order"},
		{"a failed connection fails", func(r *Result) { r.Connect.OK, r.Connect.Failed = 9, 1 }, false, "1 of 10 connections failed"},
		{"a connection dropped while held fails", func(r *Result) { r.Connect.Dropped = 4 }, false, "4 connections dropped"},
		{"nothing accepted fails", func(r *Result) { r.Send.Accepted, r.Send.Errors = 0, 100 }, false, "no message was accepted"},
		{"some HTTP errors only warn", func(r *Result) {
			r.Send.Errors, r.Send.ErrorsBy = 5, map[string]int64{"503": 5}
		}, true, "5 of 100 requests failed (503 ×5)"},
		{"an interrupted run fails", func(r *Result) { r.Interrupted = true }, false, "interrupted"},
		{"a missed target rate only warns", func(r *Result) { r.Send.TargetRate = 1000 }, true, "target rate of 1000/s was not reached"},
		{"server closes that resumed only warn", func(r *Result) {
			r.Sessions = &SessionReport{Closes: map[string]int64{closeKey(1013): 2}, Resumes: 2}
		}, true, "closed 2 connections"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := ok()
			tt.change(r)
			r.judge()
			if r.Passed != tt.pass {
				t.Fatalf("passed %v, want %v (failures %v)", r.Passed, tt.pass, r.Failures)
			}
			all := strings.Join(append(r.Failures, r.Warnings...), "\n")
			if !strings.Contains(all, tt.contains) {
				t.Fatalf("failures and warnings %q do not mention %q", all, tt.contains)
			}
			var out strings.Builder
			if err := r.writeTable(&out); err != nil {
				t.Fatal(err)
			}
			verdict := "PASS"
			if !tt.pass {
				verdict = "FAIL"
			}
			if !strings.HasPrefix(out.String(), "switchboard-load dm: "+verdict) {
				t.Fatalf("table does not start with the verdict:\n%s", out.String())
			}
		})
	}
}

// The rpc verdicts: call errors warn, no result at all, a server close or a backend
// refusal fails; the table names the calls, the overhead and the backend.
func TestJudgeRPC(t *testing.T) {
	ok := func() *Result {
		return &Result{
			Scenario: "rpc",
			Params:   Params{Conns: 2, InFlight: 4, ConnRate: 45},
			Connect:  &ConnectReport{Attempted: 2, OK: 2},
			RPC:      &RPCReport{Conns: 2, InFlight: 4, Calls: 100, OK: 100, PerSecond: 50},
			Backend:  &BackendReport{Addr: "127.0.0.1:9099", RPCCalls: 100, CacheS: 60},
		}
	}
	tests := []struct {
		name     string
		change   func(r *Result)
		pass     bool
		contains string
	}{
		{"every call answered passes", func(*Result) {}, true, ""},
		{"some failed calls only warn", func(r *Result) {
			r.RPC.OK, r.RPC.Errors, r.RPC.ErrorsBy = 97, 3, map[string]int64{"unavailable": 3}
		}, true, "3 of 100 calls failed (unavailable ×3)"},
		{"no call answered fails", func(r *Result) {
			r.RPC.OK, r.RPC.Errors, r.RPC.ErrorsBy = 0, 100, map[string]int64{"not_enabled": 100}
		}, false, "no rpc call was answered"},
		{"a connection the server closed fails", func(r *Result) { r.RPC.Closes = map[string]int64{"1008": 1} }, false, "closed 1 connections"},
		{"a request the backend refused fails", func(r *Result) { r.Backend.Refused = 2 }, false, "refused 2 requests"},
		{"a missed target rate only warns", func(r *Result) { r.RPC.TargetRate = 1000 }, true, "target rate of 1000/s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := ok()
			tt.change(r)
			r.judge()
			if r.Passed != tt.pass {
				t.Fatalf("passed %v, want %v (failures %v)", r.Passed, tt.pass, r.Failures)
			}
			if all := strings.Join(append(r.Failures, r.Warnings...), "\n"); !strings.Contains(all, tt.contains) {
				t.Fatalf("failures and warnings %q do not mention %q", all, tt.contains)
			}
			var out strings.Builder
			if err := r.writeTable(&out); err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{"rpc calls", "overhead", "served backend", "2 connections × 4 calls in flight"} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("table lacks %q:\n%s", want, out.String())
				}
			}
		})
	}
}
