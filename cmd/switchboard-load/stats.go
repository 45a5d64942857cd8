package main

import (
	"math"
	"math/bits"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The histogram's buckets are log-linear, as in HdrHistogram: values below 2·subBuckets are
// counted exactly, and above that every power of two is split into subBuckets equal
// buckets, so that any recorded value is known to within 1/subBuckets (0.8%).
const (
	subBucketBits = 7
	subBuckets    = 1 << subBucketBits
	// numBuckets covers every non-negative int64: the highest value has 63 bits.
	numBuckets = (63-subBucketBits)*subBuckets + subBuckets
)

// Histogram counts non-negative int64 values (nanoseconds, here) in log-linear buckets. Its
// zero value is ready, and Record is safe to call from many goroutines at once: the hot
// path is one atomic add per value, with no lock and no allocation.
type Histogram struct {
	counts [numBuckets]atomic.Uint64
	n      atomic.Uint64
	sum    atomic.Uint64 // saturates rather than wrapping; only the mean uses it
	max    atomic.Int64
	// minInv holds MaxInt64-min, so that its zero value means "no minimum yet".
	minInv atomic.Int64
}

// bucketOf returns the bucket of v, which must not be negative.
func bucketOf(v int64) int {
	u := uint64(v)
	n := bits.Len64(u)
	if n <= subBucketBits+1 {
		return int(u)
	}
	shift := n - subBucketBits - 1
	return (shift+1)*subBuckets + int(u>>shift) - subBuckets
}

// bucketRange returns the smallest and largest values that fall into bucket i.
func bucketRange(i int) (lo, hi int64) {
	if i < 2*subBuckets {
		return int64(i), int64(i)
	}
	shift := i/subBuckets - 1
	mant := int64(i%subBuckets + subBuckets)
	lo = mant << shift
	return lo, lo + (1 << shift) - 1
}

// Record adds one value; negative values (a clock step) count as zero.
func (h *Histogram) Record(v int64) {
	v = max(v, 0)
	h.counts[bucketOf(v)].Add(1)
	h.n.Add(1)
	if s := h.sum.Add(uint64(v)); s < uint64(v) {
		h.sum.Store(math.MaxUint64)
	}
	for cur := h.max.Load(); v > cur && !h.max.CompareAndSwap(cur, v); cur = h.max.Load() {
	}
	inv := math.MaxInt64 - v
	for cur := h.minInv.Load(); inv > cur && !h.minInv.CompareAndSwap(cur, inv); cur = h.minInv.Load() {
	}
}

// Count returns how many values were recorded.
func (h *Histogram) Count() uint64 { return h.n.Load() }

// Max returns the largest value recorded, exactly (0 if none).
func (h *Histogram) Max() int64 { return h.max.Load() }

// Min returns the smallest value recorded, exactly (0 if none).
func (h *Histogram) Min() int64 {
	if h.n.Load() == 0 {
		return 0
	}
	return math.MaxInt64 - h.minInv.Load()
}

// Mean returns the average of the values recorded (0 if none).
func (h *Histogram) Mean() float64 {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	return float64(h.sum.Load()) / float64(n)
}

// Quantile returns the value below which a fraction q (0..1) of the values fall: the
// midpoint of the bucket holding the value of rank ceil(q·n), kept within [Min, Max] so
// that p100 is the exact maximum. It is meant for a histogram no longer being written.
func (h *Histogram) Quantile(q float64) int64 {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(n)))
	rank = min(max(rank, 1), n)
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			lo, hi := bucketRange(i)
			return min(max(lo+(hi-lo)/2, h.Min()), h.Max())
		}
	}
	return h.Max()
}

// Latency is a histogram of durations summarised for a report, in milliseconds.
type Latency struct {
	Count uint64  `json:"count"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P95   float64 `json:"p95_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p999_ms"`
	Max   float64 `json:"max_ms"`
}

// Summary summarises h, whose values are nanoseconds.
func (h *Histogram) Summary() Latency {
	ms := func(ns int64) float64 { return round3(float64(ns) / 1e6) }
	return Latency{
		Count: h.Count(),
		Mean:  round3(h.Mean() / 1e6),
		P50:   ms(h.Quantile(0.50)),
		P95:   ms(h.Quantile(0.95)),
		P99:   ms(h.Quantile(0.99)),
		P999:  ms(h.Quantile(0.999)),
		Max:   ms(h.Max()),
	}
}

// round3 keeps three decimals: microseconds, for values in milliseconds.
func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

// perSecond returns n/d, rounded to a tenth, or 0 for an empty interval.
func perSecond(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return math.Round(float64(n)/d.Seconds()*10) / 10
}

// tally counts occurrences by a short key (an HTTP status, an error class, a close code).
// It is for the rare paths: errors and reconnects, not every message.
type tally struct {
	mu sync.Mutex
	m  map[string]int64
}

func (t *tally) add(key string) {
	t.mu.Lock()
	if t.m == nil {
		t.m = make(map[string]int64)
	}
	t.m[key]++
	t.mu.Unlock()
}

// snapshot returns a copy of the counts, nil if there are none (so JSON omits it).
func (t *tally) snapshot() map[string]int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.m) == 0 {
		return nil
	}
	out := make(map[string]int64, len(t.m))
	for k, v := range t.m {
		out[k] = v
	}
	return out
}

func (t *tally) total() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	var n int64
	for _, v := range t.m {
		n += v
	}
	return n
}

// sortedKeys returns m's keys, numbers first in numeric order, then the rest sorted.
func sortedKeys(m map[string]int64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		a, errA := strconv.Atoi(keys[i])
		b, errB := strconv.Atoi(keys[j])
		switch {
		case errA == nil && errB == nil:
			return a < b
		case errA == nil || errB == nil:
			return errA == nil
		}
		return keys[i] < keys[j]
	})
	return keys
}
