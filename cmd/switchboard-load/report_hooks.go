package main

import "fmt"

// judgeHooks adds the verdicts of the rpc calls and of the served backend. Call errors
// (timeouts, rate_limited, unavailable) are capacity signals and warn, like HTTP errors;
// a run with no answered call fails, and so does one in which the backend saw a request
// that was not signed right.
func (r *Result) judgeHooks() {
	if c := r.RPC; c != nil {
		if c.Calls > 0 && c.OK == 0 {
			r.Failures = append(r.Failures, "no rpc call was answered with a result")
		} else if c.Errors > 0 {
			r.Warnings = append(r.Warnings, fmt.Sprintf("%d of %d calls failed (%s)", c.Errors, c.Calls, formatTally(c.ErrorsBy)))
		}
		if n := sumTally(c.Closes); n > 0 {
			r.Failures = append(r.Failures, fmt.Sprintf("the server closed %d connections during the run (%s)", n, formatTally(c.Closes)))
		}
		if c.TargetRate > 0 && c.PerSecond < 0.95*c.TargetRate && !r.Interrupted {
			r.Warnings = append(r.Warnings, fmt.Sprintf("the target rate of %g/s was not reached: the server, the backend or the tool is saturated, or --conns × --conn-rate is below it", c.TargetRate))
		}
	}
	if b := r.Backend; b != nil && b.Refused > 0 {
		r.Failures = append(r.Failures, fmt.Sprintf("the served backend refused %d requests (bad signature or method)", b.Refused))
	}
}

// hookRows prints the rpc calls and the served backend.
func (r *Result) hookRows(row func(label, format string, args ...any)) {
	if c := r.RPC; c != nil {
		row("rpc calls", "%d sent, %d results in %.2f s = %.1f/s", c.Calls, c.OK, c.Seconds, c.PerSecond)
		if c.TargetRate > 0 {
			row("  target rate", "%g/s", c.TargetRate)
		}
		row("  round trip", "%s", fmtLatency(c.Latency))
		row("  overhead", "%s", fmtLatency(c.Overhead))
		if c.Unmeasured > 0 {
			row("  overhead unmeasured", "%d results did not carry the backend's time (not a served backend?)", c.Unmeasured)
		}
		if c.Errors > 0 {
			row("  errors", "%d: %s", c.Errors, formatTally(c.ErrorsBy))
		} else {
			row("  errors", "none")
		}
		if len(c.Closes) > 0 {
			row("  server closes", "%s", formatTally(c.Closes))
		}
	}
	if b := r.Backend; b != nil {
		row("served backend", "%s: %d rpc, %d authorize calls, %d refused; delay %g ms, cache_s %g", b.Addr, b.RPCCalls, b.AuthorizeCalls, b.Refused, b.DelayMS, b.CacheS)
		if b.Handler.Count > 0 {
			row("  rpc handler time", "%s", fmtLatency(b.Handler))
		}
	}
}
