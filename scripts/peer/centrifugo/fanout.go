package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The fanout scenario is the room of cmd/switchboard-load's fanout, as Centrifugo has it: one
// channel with one history that every member subscribes to from the client, and HTTP
// publishers posting to that channel. It counts every delivery as the load tool does: per
// member, a bitset of the posts it received (duplicates), the publication offsets it saw
// (order), and after the grace period every accepted post that some member lacks (lost).

// fanPost is one post: when it was sent, whether Centrifugo accepted it, and how many
// distinct members have received it.
type fanPost struct {
	sent      int64 // unix nanoseconds, as in the payload
	accepted  atomic.Bool
	delivered atomic.Int32
}

// fanMember is one member's view, touched on its read goroutine; mu guards it against the
// report, which reads it after the connections have closed.
type fanMember struct {
	mu         sync.Mutex
	seen       []uint64 // bitset of the sequence numbers received
	lastOffset uint64
	latencies  []int64 // ns, post to this delivery
}

type fanoutRun struct {
	c       config
	channel string
	members []*fanMember

	mu    sync.RWMutex
	posts []*fanPost // by sequence number

	delivered, duplicated  atomic.Int64
	outOfOrder, unexpected atomic.Int64
	lastDelivery           atomic.Int64
	requests, accepted     atomic.Int64
	errors                 atomic.Int64
	errMu                  sync.Mutex
	errSample              map[string]int
	completeMu             sync.Mutex
	complete               []int64 // ns, post to its last member's delivery
}

func runFanout(c config) (*result, error) {
	channel := c.roomChannel()
	res := &result{Scenario: "fanout", Room: channel, Params: &params{
		Members: c.members, Publishers: c.publishers, Rate: c.rate, DurationS: c.duration.Seconds(), PayloadBytes: c.payloadBytes,
	}}
	r := &fanoutRun{c: c, channel: channel, members: make([]*fanMember, c.members), errSample: map[string]int{}}
	for i := range r.members {
		r.members[i] = &fanMember{}
	}
	fmt.Fprintf(os.Stderr, "connecting %d members of %s with %d dialers\n", c.members, channel, c.dialers)
	clients, cr := connectAll(c, userIDs(c.userPrefix, "m", c.members), c.dialers, func(i int) func([]byte, uint64) {
		return func(data []byte, offset uint64) { r.onPub(r.members[i], data, offset) }
	})
	res.Connect = cr
	if cr.Failed > 0 {
		closeAll(clients)
		res.Failed = fmt.Sprintf("%d of %d members failed to connect", cr.Failed, cr.Attempted)
		return res, nil
	}

	tr := &http.Transport{MaxIdleConns: c.publishers, MaxIdleConnsPerHost: c.publishers, MaxConnsPerHost: c.publishers, DisableCompression: true}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	api := strings.TrimRight(c.url, "/") + "/api/publish"

	procs := watch(c)
	start := time.Now()
	end := start.Add(c.duration)
	rate := "as fast as possible"
	if c.rate > 0 {
		rate = fmt.Sprintf("%g/s", c.rate)
	}
	fmt.Fprintf(os.Stderr, "posting with %d publishers, %s for %s\n", c.publishers, rate, c.duration)
	var next atomic.Int64
	var lastAnswer atomic.Int64
	var wg sync.WaitGroup
	for range c.publishers {
		wg.Go(func() {
			body := make([]byte, 0, c.payloadBytes+len(channel)+64)
			for {
				seq := next.Add(1) - 1
				if c.rate > 0 { // post seq is due seq/rate after the start, as the load tool's pacer
					due := start.Add(time.Duration(float64(seq) / c.rate * float64(time.Second)))
					if !due.Before(end) {
						return
					}
					time.Sleep(time.Until(due))
				}
				if !time.Now().Before(end) {
					return
				}
				body = r.publish(hc, api, body[:0], seq)
				atomicMax(&lastAnswer, int64(time.Since(start)))
			}
		})
	}
	wg.Wait()
	sendElapsed := time.Duration(lastAnswer.Load())
	graceEnd := time.Now().Add(c.grace)
	for time.Now().Before(graceEnd) {
		if lost, _ := r.missing(); lost == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	procs.fill(res, c, r.delivered.Load())
	res.Connect.Dropped = dropped(clients)
	closeAll(clients)

	res.Send = &sendReport{
		Requests: r.requests.Load(), Accepted: r.accepted.Load(), Errors: r.errors.Load(),
		Seconds: round(sendElapsed.Seconds(), 3), TargetRate: c.rate,
	}
	if sendElapsed > 0 {
		res.Send.AcceptedPerSecond = round(float64(r.accepted.Load())/sendElapsed.Seconds(), 1)
	}
	for e, n := range r.errSample {
		res.Send.ErrorSample = append(res.Send.ErrorSample, fmt.Sprintf("%d× %s", n, e))
	}
	res.Delivery = r.report(start)
	d := res.Delivery
	var bad []string
	for _, f := range []struct {
		n    int64
		what string
	}{{d.Lost, "lost"}, {d.Duplicated, "duplicated"}, {d.OutOfOrder, "out of order"}} {
		if f.n > 0 {
			bad = append(bad, fmt.Sprintf("%d deliveries %s", f.n, f.what))
		}
	}
	if res.Connect.Dropped > 0 {
		bad = append(bad, fmt.Sprintf("%d connections dropped", res.Connect.Dropped))
	}
	if r.accepted.Load() == 0 {
		bad = append(bad, "no post was accepted")
	}
	res.Failed = strings.Join(bad, ", ")
	return res, nil
}

// publish posts message seq to the room channel and records whether Centrifugo accepted it.
func (r *fanoutRun) publish(hc *http.Client, api string, body []byte, seq int64) []byte {
	p := &fanPost{sent: time.Now().UnixNano()}
	r.mu.Lock()
	for int64(len(r.posts)) <= seq {
		r.posts = append(r.posts, nil)
	}
	r.posts[seq] = p
	r.mu.Unlock()

	body = append(body, `{"channel":`...)
	body = strconv.AppendQuote(body, r.channel)
	body = append(body, `,"data":`...)
	body = appendPayload(body, p.sent, seq, r.c.payloadBytes)
	body = append(body, '}')
	r.requests.Add(1)
	req, err := http.NewRequest(http.MethodPost, api, bytes.NewReader(body))
	if err != nil {
		r.fail(err.Error())
		return body
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-API-Key", r.c.apiKey)
	resp, err := hc.Do(req)
	if err != nil {
		r.fail(err.Error())
		return body
	}
	answer, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		r.fail(fmt.Sprintf("http %d %s", resp.StatusCode, bytes.TrimSpace(answer)))
		return body
	}
	var a struct {
		Error  json.RawMessage `json:"error"`
		Result *struct {
			Offset uint64 `json:"offset"`
		} `json:"result"`
	}
	if err := json.Unmarshal(answer, &a); err != nil || a.Error != nil || a.Result == nil {
		r.fail(fmt.Sprintf("answer %s", bytes.TrimSpace(answer)))
		return body
	}
	p.accepted.Store(true)
	r.accepted.Add(1)
	return body
}

func (r *fanoutRun) fail(e string) {
	r.errors.Add(1)
	r.errMu.Lock()
	if len(r.errSample) < 10 || r.errSample[e] > 0 {
		r.errSample[e]++
	}
	r.errMu.Unlock()
}

func (r *fanoutRun) post(seq int64) *fanPost {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if seq < 0 || seq >= int64(len(r.posts)) {
		return nil
	}
	return r.posts[seq]
}

// onPub counts one delivery to m; it runs on m's read goroutine.
func (r *fanoutRun) onPub(m *fanMember, data []byte, offset uint64) {
	now := time.Now().UnixNano()
	_, seq, ok := parsePayload(data)
	if !ok {
		return
	}
	p := r.post(seq)
	if p == nil {
		r.unexpected.Add(1)
		return
	}
	m.mu.Lock()
	word, bit := seq/64, uint64(1)<<(seq%64)
	for int64(len(m.seen)) <= word {
		m.seen = append(m.seen, 0)
	}
	if m.seen[word]&bit != 0 {
		m.mu.Unlock()
		r.duplicated.Add(1)
		return
	}
	m.seen[word] |= bit
	if offset <= m.lastOffset {
		r.outOfOrder.Add(1)
	}
	m.lastOffset = max(m.lastOffset, offset)
	m.latencies = append(m.latencies, now-p.sent)
	m.mu.Unlock()
	r.delivered.Add(1)
	if p.delivered.Add(1) == int32(len(r.members)) {
		r.completeMu.Lock()
		r.complete = append(r.complete, now-p.sent)
		r.completeMu.Unlock()
	}
	atomicMax(&r.lastDelivery, now)
}

// missing returns the deliveries of accepted posts not yet seen, and how many posts they
// belong to.
func (r *fanoutRun) missing() (deliveries, posts int64) {
	want := int32(len(r.members))
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, p := range r.posts {
		if p != nil && p.accepted.Load() {
			if got := p.delivered.Load(); got < want {
				deliveries += int64(want - got)
				posts++
			}
		}
	}
	return deliveries, posts
}

func (r *fanoutRun) report(start time.Time) *deliveryStats {
	lost, incomplete := r.missing()
	d := &deliveryStats{
		Expected: r.accepted.Load() * int64(len(r.members)), Delivered: r.delivered.Load(),
		Lost: lost, Duplicated: r.duplicated.Load(), OutOfOrder: r.outOfOrder.Load(), Unexpected: r.unexpected.Load(),
		Incomplete: incomplete,
	}
	if last := r.lastDelivery.Load(); last > 0 {
		el := time.Duration(last - start.UnixNano())
		d.Seconds = round(el.Seconds(), 3)
		d.PerSecond = round(float64(d.Delivered)/el.Seconds(), 1)
	}
	var lat []int64
	for _, m := range r.members {
		m.mu.Lock()
		lat = append(lat, m.latencies...)
		m.mu.Unlock()
	}
	d.Latency = summarize(lat)
	r.completeMu.Lock()
	complete := summarize(r.complete)
	r.completeMu.Unlock()
	d.Complete = &complete
	return d
}

// summarize sorts ns (nanoseconds) and returns its percentiles in milliseconds.
func summarize(ns []int64) latencySummary {
	slices.Sort(ns)
	pct := func(p float64) float64 {
		if len(ns) == 0 {
			return 0
		}
		return round(float64(ns[min(len(ns)-1, int(p*float64(len(ns))))])/1e6, 3)
	}
	return latencySummary{P50: pct(0.50), P95: pct(0.95), P99: pct(0.99), Max: pct(1)}
}

func atomicMax(v *atomic.Int64, x int64) {
	for cur := v.Load(); x > cur && !v.CompareAndSwap(cur, x); cur = v.Load() {
	}
}

// fastPub reads a publication push of channel from one line of Centrifugo's JSON protocol,
// {"push":{"channel":"<channel>","pub":{"data":<data>,"offset":<n>}}}, without a JSON
// decoder: at a few hundred thousand deliveries a second the driver's own CPU matters. The
// data must be one of this driver's payloads, which hold no nested object. ok is false for
// anything else, which the caller then decodes in full.
func fastPub(line []byte, channel string) (data []byte, offset uint64, ok bool) {
	rest, found := bytes.CutPrefix(line, []byte(`{"push":{"channel":"`))
	if !found {
		return nil, 0, false
	}
	if rest, found = bytes.CutPrefix(rest, []byte(channel)); !found {
		return nil, 0, false
	}
	if rest, found = bytes.CutPrefix(rest, []byte(`","pub":{"data":`)); !found || len(rest) == 0 || rest[0] != '{' {
		return nil, 0, false
	}
	end := bytes.IndexByte(rest, '}')
	if end < 0 {
		return nil, 0, false
	}
	data, rest = rest[:end+1], rest[end+1:]
	if rest, found = bytes.CutPrefix(rest, []byte(`,"offset":`)); !found {
		return nil, 0, false
	}
	i := 0
	for ; i < len(rest) && rest[i] >= '0' && rest[i] <= '9'; i++ {
	}
	if i == 0 || (i < len(rest) && rest[i] != '}' && rest[i] != ',') {
		return nil, 0, false
	}
	offset, err := strconv.ParseUint(string(rest[:i]), 10, 64)
	if err != nil {
		return nil, 0, false
	}
	return data, offset, true
}
