package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Payloads are JSON objects whose first two fields are fixed, so that the receivers can read
// them without a JSON decoder: {"t":<send time, unix ns>,"s":<sequence>,"p":"<padding>"}.
const (
	payloadTime = `{"t":`
	payloadSeq  = `,"s":`
	payloadPad  = `,"p":"`
)

// appendPayload appends a payload of about size bytes (exactly size when size is larger
// than the two numbers need) to b.
func appendPayload(b []byte, sent, seq int64, size int) []byte {
	start := len(b)
	b = append(b, payloadTime...)
	b = strconv.AppendInt(b, sent, 10)
	b = append(b, payloadSeq...)
	b = strconv.AppendInt(b, seq, 10)
	if pad := size - (len(b) - start) - len(payloadPad) - 2; pad > 0 {
		b = append(b, payloadPad...)
		for range pad {
			b = append(b, 'x')
		}
		b = append(b, '"')
	}
	return append(b, '}')
}

// parsePayload reads the send time and sequence number of a payload. It takes the fast path
// for the tool's own encoding and falls back to a JSON decoder, so that a proxy that
// re-encodes the data does not break the run.
func parsePayload(b []byte) (sent, seq int64, ok bool) {
	if rest, found := bytes.CutPrefix(b, []byte(payloadTime)); found {
		var n1, n2 int
		if sent, n1 = leadingInt(rest); n1 > 0 {
			if rest, found = bytes.CutPrefix(rest[n1:], []byte(payloadSeq)); found {
				if seq, n2 = leadingInt(rest); n2 > 0 {
					return sent, seq, true
				}
			}
		}
	}
	var p struct {
		T *int64 `json:"t"`
		S *int64 `json:"s"`
	}
	if json.Unmarshal(b, &p) != nil || p.T == nil || p.S == nil {
		return 0, -1, false
	}
	return *p.T, *p.S, true
}

// leadingInt parses the decimal digits at the start of b, returning the value and how many
// bytes it used (0 if none, or on overflow).
func leadingInt(b []byte) (int64, int) {
	var v int64
	i := 0
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		if v > (1<<63-1-9)/10 {
			return 0, 0
		}
		v = v*10 + int64(b[i]-'0')
	}
	return v, i
}

// idFromAnswer reads the id of a 202 answer {"id":"..."}.
func idFromAnswer(b []byte) (string, bool) {
	const key = `"id":"`
	if i := bytes.Index(b, []byte(key)); i >= 0 {
		rest := b[i+len(key):]
		if j := bytes.IndexByte(rest, '"'); j > 0 {
			return string(rest[:j]), true
		}
	}
	return "", false
}

// pacer hands out sequence numbers to the publishers and says when each is due: all at once
// with no rate, or spaced 1/rate apart from the start. It stops at count or at end,
// whichever comes first, so that every run is bounded.
type pacer struct {
	start time.Time
	end   time.Time
	rate  float64
	count int64
	next  atomic.Int64
}

func newPacer(start time.Time, d time.Duration, rate float64, count int64) *pacer {
	return &pacer{start: start, end: start.Add(d), rate: rate, count: count}
}

// take returns the next sequence number once it is due, or false when the run is over. The
// timer is the caller's, reused across calls.
func (p *pacer) take(ctx context.Context, t *time.Timer) (int64, bool) {
	seq := p.next.Add(1) - 1
	if p.count > 0 && seq >= p.count {
		return 0, false
	}
	if p.rate > 0 {
		due := p.start.Add(time.Duration(float64(seq) / p.rate * float64(time.Second)))
		if !due.Before(p.end) {
			return 0, false
		}
		if wait := time.Until(due); wait > 0 {
			t.Reset(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return 0, false
			case <-t.C:
			}
		}
	}
	if ctx.Err() != nil || !time.Now().Before(p.end) {
		return 0, false
	}
	return seq, true
}

// publishers runs n publishers, each calling send for every sequence number the pacer hands
// it, and returns when all have stopped: the time from start to the last answer.
func publishers(ctx context.Context, n int, p *pacer, send func(publisher int, seq int64)) time.Duration {
	var wg sync.WaitGroup
	var last atomic.Int64
	for i := range n {
		wg.Go(func() {
			t := time.NewTimer(time.Hour)
			t.Stop()
			for {
				seq, ok := p.take(ctx, t)
				if !ok {
					return
				}
				send(i, seq)
				atomicMax(&last, int64(time.Since(p.start)))
			}
		})
	}
	wg.Wait()
	return time.Duration(last.Load())
}

// sendStats counts the HTTP side of a run.
type sendStats struct {
	requests atomic.Int64
	accepted atomic.Int64
	errors   tally     // by HTTP status or error class
	latency  Histogram // request round trip
}

// record counts one request's outcome: status 0 is a transport error err.
func (s *sendStats) record(status int, err error, took time.Duration) {
	s.requests.Add(1)
	s.latency.Record(int64(took))
	switch {
	case err != nil:
		s.errors.add(errorClass(err))
	case status != 202:
		s.errors.add(strconv.Itoa(status))
	}
}

func (s *sendStats) report(elapsed time.Duration, rate float64) *SendReport {
	return &SendReport{
		Requests:          s.requests.Load(),
		Accepted:          s.accepted.Load(),
		Errors:            s.errors.total(),
		ErrorsBy:          s.errors.snapshot(),
		Seconds:           round3(elapsed.Seconds()),
		AcceptedPerSecond: perSecond(s.accepted.Load(), elapsed),
		TargetRate:        rate,
		Latency:           s.latency.Summary(),
	}
}

// sendPhase is the sending half shared by the dm and fanout scenarios.
type sendPhase struct {
	send      *sendStats
	delivered *atomic.Int64
	// sent and delivered name what is counted in the progress line ("accepted",
	// "delivered"; "posts accepted", "deliveries").
	sentNoun, deliveredNoun string
	publish                 func(publisher int, seq int64)
	posters                 posterPool
	// done reports whether every accepted message has been delivered.
	done func() bool
	// stopReaders stops the connections' readers and waits for them.
	stopReaders func()
}

// run sends with the configured publishers and pacing, printing progress each second, then
// waits up to the grace period for the last deliveries — even after an interrupt: it is
// bounded, and without it every message in flight would count as lost — and stops the
// readers, so that the report sees every delivery they counted. It returns how long sending
// took and whether ctx interrupted it.
func (ph sendPhase) run(ctx context.Context, cfg config, prog *progress, start time.Time, verb string) (time.Duration, bool) {
	var prevSent, prevDel int64
	stop := prog.every(time.Second, func(time.Duration) string {
		acc, del := ph.send.accepted.Load(), ph.delivered.Load()
		line := fmt.Sprintf("%s %d (%d/s), %s %d (%d/s), errors %d", ph.sentNoun, acc, acc-prevSent, ph.deliveredNoun, del, del-prevDel, ph.send.errors.total())
		prevSent, prevDel = acc, del
		return line
	})
	elapsed := publishers(ctx, cfg.publishers, newPacer(start, cfg.duration, cfg.rate, cfg.count), ph.publish)
	ph.posters.close()
	stop()
	interrupted := ctx.Err() != nil
	prog.printf("%s %d; waiting up to %s for the last deliveries", verb, ph.send.requests.Load(), cfg.grace)
	waitUntil(cfg.grace, ph.done)
	ph.stopReaders()
	return elapsed, interrupted
}
