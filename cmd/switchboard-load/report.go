package main

import (
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
)

// Result is the outcome of one run: what --json prints, and what the table shows.
type Result struct {
	Scenario    string          `json:"scenario"`
	Targets     []string        `json:"targets"`
	Params      Params          `json:"params"`
	Host        Host            `json:"host"`
	Started     time.Time       `json:"started"`
	Connect     *ConnectReport  `json:"connect,omitempty"`
	Send        *SendReport     `json:"send,omitempty"`
	Delivery    *DeliveryReport `json:"delivery,omitempty"`
	Sessions    *SessionReport  `json:"sessions,omitempty"`
	RPC         *RPCReport      `json:"rpc,omitempty"`
	Backend     *BackendReport  `json:"backend,omitempty"`
	Server      *ProcReport     `json:"server,omitempty"`
	Redis       *ProcReport     `json:"redis,omitempty"`
	Tool        *ProcReport     `json:"load_tool,omitempty"`
	Wire        *WireReport     `json:"wire,omitempty"`
	Soak        *SoakReport     `json:"soak,omitempty"`
	Interrupted bool            `json:"interrupted,omitempty"`
	Passed      bool            `json:"passed"`
	Failures    []string        `json:"failures,omitempty"`
	Warnings    []string        `json:"warnings,omitempty"`
}

// Params are the parameters of the run, for the record.
type Params struct {
	Users        int     `json:"users,omitempty"`
	Members      int     `json:"members,omitempty"`
	Room         string  `json:"room,omitempty"`
	Conns        int     `json:"conns,omitempty"`
	Publishers   int     `json:"publishers,omitempty"`
	Rate         float64 `json:"rate,omitempty"`
	DurationS    float64 `json:"duration_s,omitempty"`
	Count        int64   `json:"count,omitempty"`
	PayloadBytes int     `json:"payload_bytes,omitempty"`
	GraceS       float64 `json:"grace_s,omitempty"`
	HoldS        float64 `json:"hold_s,omitempty"`
	Via          string  `json:"via,omitempty"`      // dm: http or ws
	DMGrant      string  `json:"dm_grant,omitempty"` // dm: the tokens' dm claim
	InFlight     int     `json:"in_flight,omitempty"`
	ConnRate     float64 `json:"conn_rate,omitempty"`
	Dialers      int     `json:"dialers"`
	UserPrefix   string  `json:"user_prefix"`
	Auth         string  `json:"auth"`
}

// Host describes the machine the tool ran on, for comparing runs.
type Host struct {
	CPUs      int     `json:"cpus"`
	GoVersion string  `json:"go_version"`
	LoadAvg   float64 `json:"load_avg_1m"` // before the run: other work on the machine skews results
}

// ConnectReport is the phase that opens the connections.
type ConnectReport struct {
	Attempted int              `json:"attempted"`
	OK        int              `json:"ok"`
	Failed    int64            `json:"failed"`
	Failures  map[string]int64 `json:"failures,omitempty"`
	Seconds   float64          `json:"seconds"`
	PerSecond float64          `json:"per_second"`
	Latency   Latency          `json:"latency"` // dial to welcome
	// Dropped counts connections that ended during the hold (conns).
	Dropped int `json:"dropped,omitempty"`
}

// SendReport is the HTTP side of a run.
type SendReport struct {
	Requests          int64            `json:"requests"`
	Accepted          int64            `json:"accepted"`
	Errors            int64            `json:"errors"`
	ErrorsBy          map[string]int64 `json:"errors_by,omitempty"` // by HTTP status or error class
	Seconds           float64          `json:"seconds"`
	AcceptedPerSecond float64          `json:"accepted_per_second"`
	TargetRate        float64          `json:"target_rate,omitempty"`
	Latency           Latency          `json:"latency"` // request round trip
	// RecipientsMin and RecipientsMax are the recipients counts of room posts (fanout).
	RecipientsMin int `json:"recipients_min,omitempty"`
	RecipientsMax int `json:"recipients_max,omitempty"`
}

// DeliveryReport is the WebSocket side of a run.
type DeliveryReport struct {
	Expected   int64   `json:"expected"`  // accepted messages (dm) or accepted posts × members (fanout)
	Delivered  int64   `json:"delivered"` // distinct deliveries of this run's messages
	Seconds    float64 `json:"seconds"`   // from the first send to the last delivery
	PerSecond  float64 `json:"per_second"`
	Lost       int64   `json:"lost"`
	Duplicated int64   `json:"duplicated"`
	OutOfOrder int64   `json:"out_of_order"`
	// Unexpected counts deliveries the tool saw no 202 for (its request failed or timed
	// out after the server had accepted it): not a failure.
	Unexpected int64    `json:"unexpected,omitempty"`
	LostSample []string `json:"lost_sample,omitempty"`
	Latency    Latency  `json:"latency"` // send timestamp to receipt, each delivery
	// Complete is the time from a room post to its last member's delivery (fanout), and
	// Incomplete the posts that some member never received.
	Complete   *Latency `json:"complete,omitempty"`
	Incomplete int64    `json:"incomplete,omitempty"`
}

// SessionReport is what happened to the connections besides messages.
type SessionReport struct {
	Closes         map[string]int64 `json:"closes,omitempty"` // by the server, by close code
	Resumes        int64            `json:"resumes,omitempty"`
	NotRecovered   int64            `json:"not_recovered,omitempty"`
	ResumeFailures map[string]int64 `json:"resume_failures,omitempty"`
	OtherFrames    map[string]int64 `json:"other_frames,omitempty"`
	BadFrames      int64            `json:"bad_frames,omitempty"`
}

// ProcReport is one process over the measured phase.
type ProcReport struct {
	PID          int     `json:"pid"`
	RSSBeforeMB  float64 `json:"rss_before_mb,omitempty"`
	RSSAfterMB   float64 `json:"rss_after_mb,omitempty"`
	RSSPerConnKB float64 `json:"rss_per_conn_kb,omitempty"`
	CPUSeconds   float64 `json:"cpu_seconds"`
	CPUCores     float64 `json:"cpu_cores"` // average busy cores
	// CPUPerOpMicros is CPU per delivered message (dm, fanout) or per connection (conns).
	CPUPerOpMicros float64 `json:"cpu_us_per_op,omitempty"`
	Error          string  `json:"error,omitempty"`
}

func newResult(cfg config) *Result {
	auth := "dev"
	if cfg.signer != nil {
		auth = "jwt " + cfg.signer.alg()
	}
	return &Result{
		Scenario: cfg.scenario,
		Targets:  cfg.urls,
		Host:     Host{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), LoadAvg: loadAverage()},
		Started:  time.Now().UTC().Truncate(time.Millisecond),
		Params: Params{
			Users: cfg.users, Members: cfg.members, Room: cfg.room, Conns: cfg.conns,
			Publishers: cfg.publishers, Rate: cfg.rate, DurationS: cfg.duration.Seconds(),
			Count: cfg.count, PayloadBytes: cfg.payloadBytes, GraceS: cfg.grace.Seconds(),
			HoldS: cfg.hold.Seconds(), Dialers: cfg.dialers, UserPrefix: cfg.userPrefix, Auth: auth,
			Via: cfg.via, DMGrant: strings.Join(cfg.jwtDM, ","), InFlight: cfg.inFlight, ConnRate: cfg.connRate,
		},
	}
}

// judge decides whether the run passed: every connection opened, and every accepted
// message delivered exactly once, in order. HTTP errors are capacity signals, not broken
// guarantees: they warn, unless nothing was accepted at all.
func (r *Result) judge() {
	if c := r.Connect; c != nil && c.Failed > 0 {
		r.Failures = append(r.Failures, fmt.Sprintf("%d of %d connections failed", c.Failed, c.Attempted))
	}
	if c := r.Connect; c != nil && c.Dropped > 0 {
		r.Failures = append(r.Failures, fmt.Sprintf("%d connections dropped while held", c.Dropped))
	}
	if s := r.Send; s != nil {
		if s.Requests > 0 && s.Accepted == 0 {
			r.Failures = append(r.Failures, "no message was accepted")
		} else if s.Errors > 0 {
			r.Warnings = append(r.Warnings, fmt.Sprintf("%d of %d requests failed (%s)", s.Errors, s.Requests, formatTally(s.ErrorsBy)))
		}
		if s.TargetRate > 0 && s.AcceptedPerSecond < 0.95*s.TargetRate && !r.Interrupted {
			r.Warnings = append(r.Warnings, fmt.Sprintf("the target rate of %g/s was not reached: the server or the tool is saturated (latencies are measured from each request's own send time)", s.TargetRate))
		}
	}
	if d := r.Delivery; d != nil {
		for _, f := range []struct {
			n    int64
			what string
		}{{d.Lost, "lost"}, {d.Duplicated, "duplicated"}, {d.OutOfOrder, "out of order"}} {
			if f.n > 0 {
				r.Failures = append(r.Failures, fmt.Sprintf("%d deliveries %s", f.n, f.what))
			}
		}
	}
	if s := r.Sessions; s != nil {
		if n := sumTally(s.Closes); n > 0 {
			r.Warnings = append(r.Warnings, fmt.Sprintf("the server closed %d connections during the run (%s); they resumed", n, formatTally(s.Closes)))
		}
		if s.NotRecovered > 0 {
			r.Warnings = append(r.Warnings, fmt.Sprintf("%d resumes found history trimmed (recovered:false)", s.NotRecovered))
		}
	}
	r.judgeHooks()
	if r.Host.LoadAvg > float64(r.Host.CPUs) {
		r.Warnings = append(r.Warnings, fmt.Sprintf("the machine was busy before the run (load average %.1f on %d CPUs): other work skews rates and latencies", r.Host.LoadAvg, r.Host.CPUs))
	}
	if r.Interrupted {
		// Not a broken guarantee, but not the run that was asked for either: a script must
		// not take it for a pass.
		r.Failures = append(r.Failures, "interrupted: the run stopped early")
	}
	r.Passed = len(r.Failures) == 0
}

// writeJSON prints r as one JSON object.
func (r *Result) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// writeTable prints r for a person sizing a deployment.
func (r *Result) writeTable(w io.Writer) error {
	verdict := "PASS"
	if !r.Passed {
		verdict = "FAIL"
	}
	p := r.Params
	fmt.Fprintf(w, "switchboard-load %s: %s\n\n", r.Scenario, verdict)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(label, format string, args ...any) {
		fmt.Fprintf(tw, "%s\t%s\n", label, fmt.Sprintf(format, args...))
	}

	row("target", "%s, %s auth", strings.Join(r.Targets, ", "), p.Auth)
	switch r.Scenario {
	case "dm":
		row("run", "%d users, %d publishers, %s, payload %d B, users %s-u*", p.Users, p.Publishers, bounds(p), p.PayloadBytes, p.UserPrefix)
	case "fanout":
		row("run", "room %s of %d members, %d publishers, %s, payload %d B", p.Room, p.Members, p.Publishers, bounds(p), p.PayloadBytes)
	case "conns":
		row("run", "%d connections from %d dialers, held %s, users %s-c*", p.Conns, p.Dialers, fmtSeconds(p.HoldS), p.UserPrefix)
	case "soak":
		row("run", "%d users, DMs from %d publishers at %s, payload %d B, users %s-u*", p.Users, p.Publishers, bounds(p), p.PayloadBytes, p.UserPrefix)
		if s := r.Soak; s != nil {
			var rooms []string
			for _, room := range s.Rooms {
				rooms = append(rooms, fmt.Sprintf("%s (%d)", room.Name, room.Members))
			}
			row("rooms", "%g posts/s to %s", s.RoomRate, strings.Join(rooms, ", "))
		}
	case "rpc":
		row("run", "%d connections × %d calls in flight (at most %g/s each), %s, data %d B", p.Conns, p.InFlight, p.ConnRate, bounds(p), p.PayloadBytes)
	}
	if p.Via == "ws" {
		row("sent", "over the users' WebSockets (send frames), dm grant %q", p.DMGrant)
	}
	row("", "")

	if c := r.Connect; c != nil {
		row("connections", "%d of %d welcomed in %.2f s = %.0f/s", c.OK, c.Attempted, c.Seconds, c.PerSecond)
		row("  dial to welcome", "%s", fmtLatency(c.Latency))
		if c.Failed > 0 {
			row("  failed", "%d: %s", c.Failed, formatTally(c.Failures))
		}
		if r.Scenario == "conns" {
			row("  dropped while held", "%d", c.Dropped)
		}
	}
	if s := r.Send; s != nil {
		what := "messages"
		switch r.Scenario {
		case "fanout":
			what = "room posts"
		case "soak":
			what = "DMs"
		}
		row(what, "%d sent, %d accepted (202) in %.2f s = %.1f/s", s.Requests, s.Accepted, s.Seconds, s.AcceptedPerSecond)
		if s.TargetRate > 0 {
			row("  target rate", "%g/s", s.TargetRate)
		}
		via := "HTTP"
		if p.Via == "ws" {
			via = "ack"
		}
		row("  "+via+" round trip", "%s", fmtLatency(s.Latency))
		if s.Errors > 0 {
			row("  "+via+" errors", "%d: %s", s.Errors, formatTally(s.ErrorsBy))
		} else {
			row("  "+via+" errors", "none")
		}
		if s.RecipientsMax > 0 {
			row("  recipients per post", "%d to %d", s.RecipientsMin, s.RecipientsMax)
		}
	}
	if d := r.Delivery; d != nil {
		row("deliveries", "%d of %d in %.2f s = %.1f/s", d.Delivered, d.Expected, d.Seconds, d.PerSecond)
		row("  latency", "%s", fmtLatency(d.Latency))
		if d.Complete != nil {
			row("  post to last member", "%s", fmtLatency(*d.Complete))
		}
		row("  lost", "%d%s", d.Lost, sample(d.LostSample))
		row("  duplicated", "%d", d.Duplicated)
		row("  out of order", "%d", d.OutOfOrder)
		if d.Incomplete > 0 {
			row("  incomplete posts", "%d", d.Incomplete)
		}
		if d.Unexpected > 0 {
			row("  without a 202 seen", "%d (their requests failed on the client side after the server accepted them)", d.Unexpected)
		}
	}
	if s := r.Sessions; s != nil {
		if len(s.Closes) > 0 {
			row("server closes", "%s; %d resumed", formatTally(s.Closes), s.Resumes)
		}
		if len(s.ResumeFailures) > 0 {
			row("  failed resumes", "%s", formatTally(s.ResumeFailures))
		}
		if len(s.OtherFrames) > 0 {
			row("other frames", "%s", formatTally(s.OtherFrames))
		}
	}
	r.hookRows(row)
	r.soakRows(row)
	row("", "")
	op := map[string]string{"conns": "connection", "fanout": "delivery", "rpc": "call"}[r.Scenario]
	if op == "" {
		op = "message"
	}
	for _, pr := range []struct {
		name string
		r    *ProcReport
	}{{"server", r.Server}, {"redis", r.Redis}, {"load tool", r.Tool}} {
		if pr.r != nil {
			row(fmt.Sprintf("%s (pid %d)", pr.name, pr.r.PID), "%s", fmtProc(pr.r, op))
		}
	}
	if wr := r.Wire; wr != nil {
		row("websocket bytes in", "%s", fmtWire(wr, op))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	for _, f := range r.Failures {
		fmt.Fprintf(w, "FAIL: %s\n", f)
	}
	for _, warn := range r.Warnings {
		fmt.Fprintf(w, "warning: %s\n", warn)
	}
	if r.Passed {
		switch r.Scenario {
		case "conns":
			fmt.Fprintln(w, "PASS: every connection was welcomed and held.")
		case "rpc":
			fmt.Fprintln(w, "PASS: calls were answered and every backend request was signed.")
		default:
			fmt.Fprintln(w, "PASS: every accepted message was delivered exactly once, in order.")
		}
	}
	return nil
}

func bounds(p Params) string {
	rate := "as fast as possible"
	if p.Rate > 0 {
		rate = fmt.Sprintf("%g/s", p.Rate)
	}
	if p.Count > 0 {
		return fmt.Sprintf("%s, %d messages (at most %s)", rate, p.Count, fmtSeconds(p.DurationS))
	}
	return fmt.Sprintf("%s for %s", rate, fmtSeconds(p.DurationS))
}

func fmtSeconds(s float64) string { return time.Duration(s * float64(time.Second)).String() }

func fmtLatency(l Latency) string {
	if l.Count == 0 {
		return "no samples"
	}
	return fmt.Sprintf("p50 %s  p95 %s  p99 %s  p99.9 %s  max %s ms", fmtMS(l.P50), fmtMS(l.P95), fmtMS(l.P99), fmtMS(l.P999), fmtMS(l.Max))
}

// fmtMS prints milliseconds with three significant digits or so.
func fmtMS(v float64) string {
	switch {
	case v < 10:
		return fmt.Sprintf("%.2f", v)
	case v < 100:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.0f", v)
}

func fmtProc(p *ProcReport, op string) string {
	if p.Error != "" {
		return "not measured: " + p.Error
	}
	var parts []string
	if p.RSSAfterMB > 0 {
		s := fmt.Sprintf("RSS %.1f -> %.1f MB", p.RSSBeforeMB, p.RSSAfterMB)
		if p.RSSPerConnKB != 0 {
			s += fmt.Sprintf(" = %.1f KB per connection", p.RSSPerConnKB)
		}
		parts = append(parts, s)
	}
	s := fmt.Sprintf("CPU %.2f s = %.2f cores", p.CPUSeconds, p.CPUCores)
	if p.CPUPerOpMicros > 0 {
		s += fmt.Sprintf(", %.1f µs per %s", p.CPUPerOpMicros, op)
	}
	return strings.Join(append(parts, s), "; ")
}

func formatTally(m map[string]int64) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range sortedKeys(m) {
		parts = append(parts, fmt.Sprintf("%s ×%d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

func sumTally(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

func sample(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return " (e.g. " + strings.Join(s, ", ") + ")"
}

// progress prints a line now and then on stderr while a run goes, so that a long run is
// visibly alive. Its zero value and a nil *progress print nothing.
type progress struct {
	w     io.Writer
	start time.Time
	mu    sync.Mutex
}

func newProgress(w io.Writer, quiet bool) *progress {
	if quiet {
		return nil
	}
	return &progress{w: w, start: time.Now()}
}

func (p *progress) printf(format string, args ...any) {
	if p == nil || p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "[%6.1fs] %s\n", time.Since(p.start).Seconds(), fmt.Sprintf(format, args...))
}

// every prints line() every d until the returned stop is called.
func (p *progress) every(d time.Duration, line func(elapsed time.Duration) string) (stop func()) {
	if p == nil || p.w == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(d)
		defer t.Stop()
		start := time.Now()
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				p.printf("%s", line(now.Sub(start)))
			}
		}
	})
	return func() { close(done); wg.Wait() }
}
