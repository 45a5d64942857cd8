package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-dev/switchboard/internal/wsclient"
)

// rpcBuffer is how many frames may wait unread per rpc connection: at most its calls'
// answers, and a ping now and then.
const rpcBuffer = maxInFlight + 16

// rpcAnswer is a result or error frame, handed by a connection's reader to the slot whose
// call it answers.
type rpcAnswer struct {
	seq   int64
	at    time.Time
	frame wsclient.Frame
}

// rpcConn is one connection of the rpc scenario: a reader that hands each answer to its
// slot, and one slot per call kept in flight. Its sends are spaced at least gap apart, so
// that the connection stays under a node's frame rate limit.
type rpcConn struct {
	conn  *wsclient.Conn
	slots []chan rpcAnswer
	dead  chan struct{} // closed when the connection ended

	gap    time.Duration // 0: no cap
	mu     sync.Mutex
	nextAt time.Time
}

// rpcRun is the state of one rpc run.
type rpcRun struct {
	cfg   config
	pacer *pacer
	conns []*rpcConn

	calls      atomic.Int64
	ok         atomic.Int64
	errors     tally
	closes     tally
	latency    Histogram // round trip of the successful calls
	overhead   Histogram // round trip minus the backend's own time
	noBackend  atomic.Int64
	lastAnswer atomic.Int64 // since the start, nanoseconds
}

// runRPC connects, then keeps --in-flight rpc calls waiting on every connection.
func runRPC(ctx context.Context, cfg config, prog *progress) (*Result, error) {
	res := newResult(cfg)
	n, closeNodes, err := openNodes(ctx, cfg, prog)
	if err != nil {
		return nil, err
	}
	defer closeNodes()
	ids := userIDs(cfg.userPrefix, "r", cfg.conns)
	if cfg.frame == frameHistory {
		empty, err := prepareHistory(ctx, cfg, n, prog, ids)
		if err != nil {
			return nil, err
		}
		defer empty()
	}
	cr, ok := n.connectForRun(ctx, cfg, prog, res, ids, "connections", rpcBuffer)
	if !ok {
		return res, nil
	}
	r := &rpcRun{cfg: cfg, conns: make([]*rpcConn, len(cr.conns))}
	recvCtx, stopRecv := context.WithCancel(context.Background())
	var readers sync.WaitGroup
	for i, c := range cr.conns {
		rc := &rpcConn{conn: c, slots: make([]chan rpcAnswer, cfg.inFlight), dead: make(chan struct{})}
		if cfg.connRate > 0 {
			rc.gap = time.Duration(float64(time.Second) / cfg.connRate)
		}
		for s := range rc.slots {
			rc.slots[s] = make(chan rpcAnswer, 1)
		}
		r.conns[i] = rc
		readers.Go(func() { r.read(recvCtx, rc) })
	}
	defer func() {
		stopRecv()
		readers.Wait()
		closeAll(cr.conns, cfg.dialers)
	}()

	procs := watchProcs(cfg)
	start := time.Now()
	r.pacer = newPacer(start, cfg.duration, cfg.rate, cfg.count)
	prog.printf("calling with %d in flight on each of %d connections, %s", cfg.inFlight, len(r.conns), bounds(res.Params))
	var prev int64
	stop := prog.every(time.Second, func(time.Duration) string {
		ok := r.ok.Load()
		line := fmt.Sprintf("calls answered %d (%d/s), errors %d", ok, ok-prev, r.errors.total())
		prev = ok
		return line
	})
	var slots sync.WaitGroup
	for _, rc := range r.conns {
		for s := range rc.slots {
			slots.Go(func() { r.callLoop(ctx, start, rc, s) })
		}
	}
	slots.Wait()
	stop()
	elapsed := time.Duration(r.lastAnswer.Load())
	res.Interrupted = ctx.Err() != nil
	procs.fill(res, cfg, r.ok.Load(), 0)
	res.RPC = r.report(elapsed, n.backend)
	res.Backend = n.backend.report()
	res.judge()
	return res, nil
}

// read hands every answer on rc to the slot its ref names, until the connection or ctx
// ends. An answer nobody waits for any more (its call timed out) is dropped.
func (r *rpcRun) read(ctx context.Context, rc *rpcConn) {
	defer close(rc.dead)
	for {
		f, err := rc.conn.Next(ctx)
		if err != nil {
			if ctx.Err() == nil {
				code, _ := rc.conn.CloseCode()
				r.closes.add(closeKey(code))
			}
			return
		}
		if f.Type != "result" && f.Type != "error" && (f.Type != frameHistory || f.Ref == "") {
			continue
		}
		slot, seq, ok := parseRef(f.Ref)
		if !ok || slot >= len(rc.slots) {
			r.errors.add("answer with an unknown ref")
			continue
		}
		select {
		case rc.slots[slot] <- rpcAnswer{seq: seq, at: time.Now(), frame: f}:
		default:
		}
	}
}

// callLoop is one slot of rc: it calls, waits for the answer, and calls again, for as long
// as the pacer hands out calls.
func (r *rpcRun) callLoop(ctx context.Context, start time.Time, rc *rpcConn, slot int) {
	pace := time.NewTimer(time.Hour)
	pace.Stop()
	wait := time.NewTimer(time.Hour)
	wait.Stop()
	frame := make([]byte, 0, r.cfg.payloadBytes+128)
	for {
		seq, ok := r.pacer.take(ctx, pace)
		if !ok || !rc.throttle(ctx, pace) {
			return
		}
		if r.cfg.frame == frameHistory {
			frame = appendHistoryFrame(frame[:0], r.cfg.room, r.cfg.historyLimit, slot, seq)
		} else {
			frame = appendRPCFrame(frame[:0], r.cfg.method, slot, seq, r.cfg.payloadBytes)
		}
		sent := time.Now()
		r.calls.Add(1)
		if err := rc.conn.SendRaw(frame); err != nil {
			r.errors.add(errorClass(err))
			return
		}
		a, outcome := rc.await(slot, seq, wait, r.cfg.callTimeout)
		if outcome != "" {
			r.errors.add(outcome)
			if outcome == "connection closed" {
				return
			}
			continue
		}
		atomicMax(&r.lastAnswer, int64(a.at.Sub(start)))
		r.record(a, sent)
	}
}

// await waits for the answer to call seq of slot, up to timeout; a non-empty outcome says
// why there is none.
func (rc *rpcConn) await(slot int, seq int64, t *time.Timer, timeout time.Duration) (rpcAnswer, string) {
	t.Reset(timeout)
	defer t.Stop()
	for {
		select {
		case a := <-rc.slots[slot]:
			if a.seq == seq {
				return a, ""
			}
			// A late answer to an earlier call that timed out.
		case <-rc.dead:
			return rpcAnswer{}, "connection closed"
		case <-t.C:
			return rpcAnswer{}, "timeout"
		}
	}
}

// throttle waits until rc may send its next frame, and reserves that moment.
func (rc *rpcConn) throttle(ctx context.Context, t *time.Timer) bool {
	if rc.gap == 0 {
		return true
	}
	rc.mu.Lock()
	now := time.Now()
	at := rc.nextAt
	if at.Before(now) {
		at = now
	}
	rc.nextAt = at.Add(rc.gap)
	rc.mu.Unlock()
	if wait := at.Sub(now); wait > 0 {
		t.Reset(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
	}
	return true
}

// record counts one answer to a call sent at sent.
func (r *rpcRun) record(a rpcAnswer, sent time.Time) {
	if a.frame.Type == "error" {
		r.errors.add(errorFrameKey(a.frame))
		return
	}
	if a.frame.Type == frameHistory {
		if n := pageLength(a.frame); n != r.cfg.historyLimit {
			r.errors.add(fmt.Sprintf("history page of %d messages, not %d", n, r.cfg.historyLimit))
			return
		}
		r.ok.Add(1)
		r.latency.Record(int64(a.at.Sub(sent)))
		return
	}
	r.ok.Add(1)
	rtt := a.at.Sub(sent)
	r.latency.Record(int64(rtt))
	if ns, ok := backendTime(a.frame.Data); ok {
		r.overhead.Record(int64(rtt) - ns)
	} else {
		r.noBackend.Add(1)
	}
}

// appendRPCFrame appends {"type":"rpc","method":M,"ref":"<slot>.<seq>","data":<payload>}.
func appendRPCFrame(b []byte, method string, slot int, seq int64, size int) []byte {
	b = append(b, `{"type":"rpc","method":"`...)
	b = append(b, method...)
	b = append(b, `","ref":"`...)
	b = strconv.AppendInt(b, int64(slot), 10)
	b = append(b, '.')
	b = strconv.AppendInt(b, seq, 10)
	b = append(b, `","data":`...)
	b = appendPayload(b, time.Now().UnixNano(), seq, size)
	return append(b, '}')
}

// parseRef reads a ref "<slot>.<seq>".
func parseRef(ref string) (slot int, seq int64, ok bool) {
	i := strings.IndexByte(ref, '.')
	if i <= 0 {
		return 0, 0, false
	}
	s, err1 := strconv.Atoi(ref[:i])
	q, err2 := strconv.ParseInt(ref[i+1:], 10, 64)
	return s, q, err1 == nil && err2 == nil && s >= 0
}

// backendTime reads the handler time a served backend put in its answer.
func backendTime(data json.RawMessage) (int64, bool) {
	const key = `{"backend_ns":`
	if rest, ok := bytes.CutPrefix(data, []byte(key)); ok {
		if v, n := leadingInt(rest); n > 0 {
			return v, true
		}
	}
	return 0, false
}

// errorFrameKey names an error frame for counting: its code, and for rpc_failed the
// backend's status.
func errorFrameKey(f wsclient.Frame) string {
	if f.Code != "rpc_failed" {
		return f.Code
	}
	var st struct {
		Status int `json:"status"`
	}
	_ = json.Unmarshal(f.Raw, &st)
	return "rpc_failed " + strconv.Itoa(st.Status)
}

// RPCReport is the rpc scenario's calls.
type RPCReport struct {
	Conns      int              `json:"conns"`
	InFlight   int              `json:"in_flight"`
	Calls      int64            `json:"calls"`
	OK         int64            `json:"ok"`
	Errors     int64            `json:"errors"`
	ErrorsBy   map[string]int64 `json:"errors_by,omitempty"` // by error code or class
	Seconds    float64          `json:"seconds"`
	PerSecond  float64          `json:"per_second"` // successful calls
	TargetRate float64          `json:"target_rate,omitempty"`
	Latency    Latency          `json:"latency"` // round trip, frame sent to result read
	// Overhead is the round trip minus the backend's own time, for answers that carry it
	// (a served backend's); Unmeasured counts those that did not.
	Overhead   Latency          `json:"overhead"`
	Unmeasured int64            `json:"overhead_unmeasured,omitempty"`
	Closes     map[string]int64 `json:"closes,omitempty"`
}

func (r *rpcRun) report(elapsed time.Duration, be *backend) *RPCReport {
	return &RPCReport{
		Conns:      len(r.conns),
		InFlight:   r.cfg.inFlight,
		Calls:      r.calls.Load(),
		OK:         r.ok.Load(),
		Errors:     r.errors.total(),
		ErrorsBy:   r.errors.snapshot(),
		Seconds:    round3(elapsed.Seconds()),
		PerSecond:  perSecond(r.ok.Load(), elapsed),
		TargetRate: r.cfg.rate,
		Latency:    r.latency.Summary(),
		Overhead:   r.overhead.Summary(),
		Unmeasured: r.noBackend.Load(),
		Closes:     r.closes.snapshot(),
	}
}
