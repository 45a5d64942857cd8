package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// SoakReport is what the soak scenario adds to a result: the room posts beside the DMs
// (which are Send and Delivery), the churn, the Pub/Sub kills, and the server sampled
// over the run.
type SoakReport struct {
	Rooms        []SoakRoomReport `json:"rooms,omitempty"`
	RoomRate     float64          `json:"room_rate,omitempty"`
	ChurnRate    float64          `json:"churn_rate,omitempty"`
	OfflineS     float64          `json:"offline_s,omitempty"`
	KillEveryS   float64          `json:"kill_every_s,omitempty"`
	SampleEveryS float64          `json:"sample_every_s"`

	RoomPosts    *SendReport     `json:"room_posts,omitempty"`
	RoomDelivery *DeliveryReport `json:"room_delivery,omitempty"`
	// BigRoomDeliveries are the room deliveries that came through a big room (fanned out
	// on read); the rest were stored per member.
	BigRoomDeliveries int64 `json:"big_room_deliveries"`
	// RecipientsMismatch counts 202s whose recipients differed from the room's members.
	RecipientsMismatch int64 `json:"recipients_mismatch,omitempty"`

	Disconnects int64 `json:"disconnects"` // connections the churn closed
	Resumes     int64 `json:"resumes"`     // reconnections, churn and server closes alike

	PubSubKills       int64            `json:"pubsub_kills"`        // CLIENT KILL TYPE pubsub commands
	PubSubKilledConns int64            `json:"pubsub_killed_conns"` // connections they closed
	KillErrors        map[string]int64 `json:"kill_errors,omitempty"`
	// NodePubSubReconnects, CaughtUp and Replayed are the nodes' own counters over the run
	// (switchboard_pubsub_reconnects_total, ..._caught_up_..., ..._replayed_...); -1 when
	// /metrics could not be read.
	NodePubSubReconnects int64 `json:"node_pubsub_reconnects"`
	CaughtUp             int64 `json:"caught_up"`
	Replayed             int64 `json:"replayed"`

	Samples  []SoakSample  `json:"samples"`
	Flatness *SoakFlatness `json:"flatness,omitempty"`
}

// SoakRoomReport is one room of the soak.
type SoakRoomReport struct {
	Name    string `json:"name"`
	Members int    `json:"members"`
}

// SoakSample is one reading of the server, and of the run so far, at AtS seconds from the
// start of sending. Phase is "baseline" (before sending), "load", or "end" (after the
// grace). RSS is the --pid's from /proc, or else the nodes' process_resident_memory_bytes;
// goroutines and connections are summed over the nodes' /metrics.
type SoakSample struct {
	AtS              float64 `json:"at_s"`
	Phase            string  `json:"phase"`
	RSSMB            float64 `json:"rss_mb"`
	Goroutines       int64   `json:"goroutines"`
	Connections      int64   `json:"connections"`
	PubSubReconnects int64   `json:"pubsub_reconnects"`
	DMsAccepted      int64   `json:"dms_accepted"`
	DMsDelivered     int64   `json:"dms_delivered"`
	PostsAccepted    int64   `json:"posts_accepted"`
	RoomDeliveries   int64   `json:"room_deliveries"`
	Disconnects      int64   `json:"disconnects"`
	Kills            int64   `json:"kills"`
	Error            string  `json:"error,omitempty"`
}

// SoakFlatness compares the first and the last window of the loaded samples: a server that
// leaks grows between them.
type SoakFlatness struct {
	WindowS            float64    `json:"window_s"`
	First              SoakWindow `json:"first"`
	Last               SoakWindow `json:"last"`
	RSSGrowthPct       float64    `json:"rss_growth_pct"`
	GoroutineGrowthPct float64    `json:"goroutine_growth_pct"`
}

// SoakWindow is the mean, and the range, of the samples in one window.
type SoakWindow struct {
	FromS         float64 `json:"from_s"`
	ToS           float64 `json:"to_s"`
	Samples       int     `json:"samples"`
	RSSMB         float64 `json:"rss_mb"`
	Goroutines    float64 `json:"goroutines"`
	GoroutinesMin int64   `json:"goroutines_min"`
	GoroutinesMax int64   `json:"goroutines_max"`
}

// Growth beyond which the soak warns (RSS) or fails (goroutines: a leak, beyond noise).
const (
	rssGrowthWarnPct     = 25
	goroutineGrowthPct   = 10
	goroutineGrowthSlack = 50
)

// nodeMetrics are the series the soak reads from the nodes' /metrics, summed over nodes.
type nodeMetrics struct {
	goroutines, rss, connections, reconnects, caughtUp, replayed int64
}

// metricNames maps the series read to their fields.
var metricNames = map[string]func(m *nodeMetrics) *int64{
	"go_goroutines":                        func(m *nodeMetrics) *int64 { return &m.goroutines },
	"process_resident_memory_bytes":        func(m *nodeMetrics) *int64 { return &m.rss },
	"switchboard_connections":              func(m *nodeMetrics) *int64 { return &m.connections },
	"switchboard_pubsub_reconnects_total":  func(m *nodeMetrics) *int64 { return &m.reconnects },
	"switchboard_caught_up_messages_total": func(m *nodeMetrics) *int64 { return &m.caughtUp },
	"switchboard_replayed_messages_total":  func(m *nodeMetrics) *int64 { return &m.replayed },
}

// parseMetrics adds the series of one /metrics answer (Prometheus text) to m.
func parseMetrics(body []byte, m *nodeMetrics) {
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		name, value, ok := bytes.Cut(line, []byte(" "))
		if !ok || len(line) == 0 || line[0] == '#' {
			continue
		}
		field := metricNames[string(name)]
		if field == nil {
			continue
		}
		if v, err := strconv.ParseFloat(string(bytes.TrimSpace(value)), 64); err == nil {
			*field(m) += int64(v)
		}
	}
}

// soakSampler reads the server every --sample-every and keeps the series.
type soakSampler struct {
	cfg   config
	n     *nodes
	start time.Time

	mu      sync.Mutex
	samples []SoakSample
	metrics []nodeMetrics // beside samples; ok[i] says whether they were read
	ok      []bool
}

func newSampler(cfg config, n *nodes, start time.Time) *soakSampler {
	return &soakSampler{cfg: cfg, n: n, start: start}
}

// scrape reads every node's /metrics.
func (s *soakSampler) scrape(ctx context.Context) (nodeMetrics, error) {
	var m nodeMetrics
	for i := range s.n.base {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		status, body, err := s.n.request(rctx, http.MethodGet, s.n.apiURL(i, "/metrics"), "", nil)
		cancel()
		if err != nil {
			return m, fmt.Errorf("%s/metrics: %s", s.n.base[i], errorClass(err))
		}
		if status != http.StatusOK {
			return m, fmt.Errorf("%s/metrics answered %d", s.n.base[i], status)
		}
		parseMetrics(body, &m)
	}
	return m, nil
}

// take records one sample of phase ("baseline", "load" or "end") and prints it.
func (s *soakSampler) take(ctx context.Context, r *soakRun, prog *progress, phase string) {
	at := time.Since(s.start)
	if phase == "baseline" {
		at = 0
	}
	m, err := s.scrape(ctx)
	smp := SoakSample{
		AtS: round3(at.Seconds()), Phase: phase,
		Goroutines: m.goroutines, Connections: m.connections, PubSubReconnects: m.reconnects,
		RSSMB:       round1(float64(m.rss) / (1 << 20)),
		DMsAccepted: r.dm.send.accepted.Load(), DMsDelivered: r.dm.delivered.Load(),
		PostsAccepted: r.roomSend.accepted.Load(), RoomDeliveries: r.roomDelivered.Load(),
		Disconnects: r.disconnects.Load(), Kills: r.kills.Load(),
	}
	if err != nil {
		smp.Error = err.Error()
	}
	if s.cfg.pid > 0 {
		if p := sampleProc(s.cfg.pid); p.err == nil {
			smp.RSSMB = round1(float64(p.rss) / (1 << 20))
		} else if smp.Error == "" {
			smp.Error = p.err.Error()
		}
	}
	s.mu.Lock()
	s.samples = append(s.samples, smp)
	s.metrics = append(s.metrics, m)
	s.ok = append(s.ok, err == nil)
	s.mu.Unlock()
	if err != nil {
		prog.printf("sample (%s) at %s: %v", phase, at.Truncate(time.Second), err)
		return
	}
	prog.printf("sample (%s) at %s: RSS %.1f MB, %d goroutines, %d connections; DMs %d acked, %d delivered; room posts %d acked, %d deliveries; %d disconnects, %d kills, %d Pub/Sub rebuilds",
		phase, at.Truncate(time.Second), smp.RSSMB, smp.Goroutines, smp.Connections, smp.DMsAccepted, smp.DMsDelivered,
		smp.PostsAccepted, smp.RoomDeliveries, smp.Disconnects, smp.Kills, smp.PubSubReconnects)
}

// every takes a sample every --sample-every until ctx ends.
func (s *soakSampler) every(ctx context.Context, r *soakRun, prog *progress) {
	t := time.NewTicker(s.cfg.soak.sampleEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.take(ctx, r, prog, "load")
		}
	}
}

// deltas returns the nodes' counters from the first readable sample to the last one, -1
// each when fewer than two were read.
func (s *soakSampler) deltas() (reconnects, caughtUp, replayed int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	first, last := -1, -1
	for i, ok := range s.ok {
		if ok {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	if first < 0 || first == last {
		return -1, -1, -1
	}
	a, b := s.metrics[first], s.metrics[last]
	return b.reconnects - a.reconnects, b.caughtUp - a.caughtUp, b.replayed - a.replayed
}

// flatness compares the samples of the first and the last window of the load: a minute
// each, or a quarter of the run if it is shorter (but at least one sample each).
func flatness(samples []SoakSample, duration, every time.Duration) *SoakFlatness {
	var load []SoakSample
	for _, s := range samples {
		if s.Phase == "load" && s.Error == "" {
			load = append(load, s)
		}
	}
	if len(load) < 2 {
		return nil
	}
	w := max(min(time.Minute, duration/4), every).Seconds()
	end := load[len(load)-1].AtS
	window := func(keep func(SoakSample) bool) SoakWindow {
		win := SoakWindow{GoroutinesMin: -1}
		var rss, g float64
		for _, s := range load {
			if !keep(s) {
				continue
			}
			if win.Samples == 0 {
				win.FromS = s.AtS
			}
			win.ToS = s.AtS
			win.Samples++
			rss += s.RSSMB
			g += float64(s.Goroutines)
			if win.GoroutinesMin < 0 || s.Goroutines < win.GoroutinesMin {
				win.GoroutinesMin = s.Goroutines
			}
			win.GoroutinesMax = max(win.GoroutinesMax, s.Goroutines)
		}
		win.RSSMB = round1(rss / float64(win.Samples))
		win.Goroutines = round1(g / float64(win.Samples))
		return win
	}
	first := window(func(s SoakSample) bool { return s.AtS <= w || s.AtS == load[0].AtS })
	last := window(func(s SoakSample) bool { return s.AtS >= end-w })
	growth := func(a, b float64) float64 {
		if a <= 0 {
			return 0
		}
		return round1((b - a) / a * 100)
	}
	return &SoakFlatness{
		WindowS: w, First: first, Last: last,
		RSSGrowthPct:       growth(first.RSSMB, last.RSSMB),
		GoroutineGrowthPct: growth(first.Goroutines, last.Goroutines),
	}
}

// report summarises the soak beyond the DMs.
func (r *soakRun) report(start time.Time, roomElapsed time.Duration, smp *soakSampler) *SoakReport {
	c := r.cfg.soak
	sr := &SoakReport{
		RoomRate: c.roomRate, ChurnRate: c.churnRate, OfflineS: c.offline.Seconds(),
		SampleEveryS:       c.sampleEvery.Seconds(),
		BigRoomDeliveries:  r.bigDelivered.Load(),
		RecipientsMismatch: r.recipientsOff.Load(),
		Disconnects:        r.disconnects.Load(),
		Resumes:            r.dm.sess.resumes.Load(),
		PubSubKills:        r.kills.Load(),
		PubSubKilledConns:  r.killed.Load(),
		KillErrors:         r.killErrors.snapshot(),
	}
	if c.redisAddr != "" {
		sr.KillEveryS = c.killEvery.Seconds()
	}
	for _, room := range r.rooms {
		sr.Rooms = append(sr.Rooms, SoakRoomReport{Name: room.name, Members: len(room.members)})
	}
	if r.roomSend.requests.Load() > 0 {
		sr.RoomPosts = r.roomSend.report(roomElapsed, c.roomRate)
		var expected int64
		r.mu.RLock()
		for _, p := range r.posts {
			if p != nil && p.accepted.Load() {
				expected += int64(len(r.rooms[p.room].members))
			}
		}
		r.mu.RUnlock()
		lost, sample := r.missingRoom(lostSampleSize)
		sr.RoomDelivery = &DeliveryReport{
			Expected:   expected,
			Delivered:  r.roomDelivered.Load(),
			Lost:       lost,
			LostSample: sample,
			Duplicated: r.roomDuplicated.Load(),
			OutOfOrder: r.roomOutOfOrder.Load(),
			Unexpected: r.roomUnexpected.Load(),
			Latency:    r.roomLatency.Summary(),
		}
	}
	sr.NodePubSubReconnects, sr.CaughtUp, sr.Replayed = smp.deltas()
	smp.mu.Lock()
	sr.Samples = append([]SoakSample(nil), smp.samples...)
	smp.mu.Unlock()
	sr.Flatness = flatness(sr.Samples, r.cfg.duration, c.sampleEvery)
	return sr
}

// judgeSoak adds the soak's verdicts; judge adds the DMs' and the common ones.
func (r *Result) judgeSoak() {
	s := r.Soak
	if s == nil {
		return
	}
	if d := s.RoomDelivery; d != nil {
		for _, f := range []struct {
			n    int64
			what string
		}{{d.Lost, "lost"}, {d.Duplicated, "duplicated"}, {d.OutOfOrder, "out of order"}} {
			if f.n > 0 {
				r.Failures = append(r.Failures, fmt.Sprintf("%d room deliveries %s", f.n, f.what))
			}
		}
		if p := s.RoomPosts; p.Requests > 0 && p.Accepted == 0 {
			r.Failures = append(r.Failures, "no room post was accepted")
		} else if p.Errors > 0 {
			r.Warnings = append(r.Warnings, fmt.Sprintf("%d of %d room posts failed (%s)", p.Errors, p.Requests, formatTally(p.ErrorsBy)))
		}
	}
	if s.RecipientsMismatch > 0 {
		r.Warnings = append(r.Warnings, fmt.Sprintf("%d room posts counted recipients other than the room's members", s.RecipientsMismatch))
	}
	if s.PubSubKilledConns > 0 && s.NodePubSubReconnects == 0 {
		r.Failures = append(r.Failures, fmt.Sprintf("%d Pub/Sub connections were killed but the nodes report no rebuilt link", s.PubSubKilledConns))
	}
	if s.KillEveryS > 0 && s.PubSubKills == 0 {
		r.Warnings = append(r.Warnings, "no Pub/Sub kill happened: the run was shorter than --kill-pubsub-every, or every CLIENT KILL failed")
	}
	if n := sumTally(s.KillErrors); n > 0 {
		r.Warnings = append(r.Warnings, fmt.Sprintf("%d CLIENT KILL commands failed (%s)", n, formatTally(s.KillErrors)))
	}
	if f := s.Flatness; f != nil {
		if float64(f.Last.GoroutinesMin) > float64(f.First.GoroutinesMax)*(1+goroutineGrowthPct/100.0)+goroutineGrowthSlack {
			r.Failures = append(r.Failures, fmt.Sprintf("goroutines grew: %d to %d in the first %.0f s of load, %d to %d in the last", f.First.GoroutinesMin, f.First.GoroutinesMax, f.WindowS, f.Last.GoroutinesMin, f.Last.GoroutinesMax))
		}
		if f.RSSGrowthPct > rssGrowthWarnPct {
			r.Warnings = append(r.Warnings, fmt.Sprintf("RSS grew %.1f%% from the first %.0f s of load to the last (%.1f to %.1f MB)", f.RSSGrowthPct, f.WindowS, f.First.RSSMB, f.Last.RSSMB))
		}
	} else {
		r.Warnings = append(r.Warnings, "too few samples to judge RSS and goroutines: lower --sample-every or lengthen --duration")
	}
	for _, smp := range s.Samples {
		if smp.Error != "" {
			r.Warnings = append(r.Warnings, "a sample failed: "+smp.Error)
			break
		}
	}
}

// soakRows prints the soak's part of the table.
func (r *Result) soakRows(row func(label, format string, args ...any)) {
	s := r.Soak
	if s == nil {
		return
	}
	if p := s.RoomPosts; p != nil {
		row("room posts", "%d sent, %d accepted (202) in %.2f s = %.1f/s", p.Requests, p.Accepted, p.Seconds, p.AcceptedPerSecond)
		row("  HTTP round trip", "%s", fmtLatency(p.Latency))
		if p.Errors > 0 {
			row("  HTTP errors", "%d: %s", p.Errors, formatTally(p.ErrorsBy))
		}
	}
	if d := s.RoomDelivery; d != nil {
		row("room deliveries", "%d of %d (%d through the big room)", d.Delivered, d.Expected, s.BigRoomDeliveries)
		row("  latency", "%s", fmtLatency(d.Latency))
		row("  lost", "%d%s", d.Lost, sample(d.LostSample))
		row("  duplicated", "%d", d.Duplicated)
		row("  out of order", "%d", d.OutOfOrder)
	}
	row("churn", "%d disconnects (%g/s, away up to %s), %d resumes", s.Disconnects, s.ChurnRate, fmtSeconds(s.OfflineS), s.Resumes)
	if s.KillEveryS > 0 {
		row("Pub/Sub kills", "%d (every %s), %d connections killed", s.PubSubKills, fmtSeconds(s.KillEveryS), s.PubSubKilledConns)
	} else {
		row("Pub/Sub kills", "none")
	}
	if s.NodePubSubReconnects >= 0 {
		row("  node side", "%d Pub/Sub links rebuilt, %d messages caught up, %d replayed to resumes", s.NodePubSubReconnects, s.CaughtUp, s.Replayed)
	}
	row("", "")
	row("samples", "every %s: at s, RSS MB, goroutines, connections", fmtSeconds(s.SampleEveryS))
	for _, smp := range s.Samples {
		if smp.Error != "" {
			row(fmt.Sprintf("  %.0f (%s)", smp.AtS, smp.Phase), "%s", smp.Error)
			continue
		}
		row(fmt.Sprintf("  %.0f (%s)", smp.AtS, smp.Phase), "%.1f MB  %d goroutines  %d connections", smp.RSSMB, smp.Goroutines, smp.Connections)
	}
	if f := s.Flatness; f != nil {
		row("flatness", "first %.0f s of load vs the last (means)", f.WindowS)
		row("  RSS", "%.1f -> %.1f MB (%+.1f%%)", f.First.RSSMB, f.Last.RSSMB, f.RSSGrowthPct)
		row("  goroutines", "%.0f -> %.0f (%+.1f%%; ranges %d-%d, %d-%d)", f.First.Goroutines, f.Last.Goroutines, f.GoroutineGrowthPct,
			f.First.GoroutinesMin, f.First.GoroutinesMax, f.Last.GoroutinesMin, f.Last.GoroutinesMax)
	}
}
