package main

import (
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"
)

// Every value falls in a bucket whose range holds it, buckets are contiguous, and a bucket
// is never wider than 1/128 of its values.
func TestBucketsCoverEveryValueWithinPrecision(t *testing.T) {
	for i := 1; i < numBuckets; i++ {
		lo, hi := bucketRange(i)
		plo, phi := bucketRange(i - 1)
		if lo != phi+1 || plo > phi || lo > hi {
			t.Fatalf("bucket %d = [%d, %d] does not follow bucket %d = [%d, %d]", i, lo, hi, i-1, plo, phi)
		}
		if lo >= 2*subBuckets && float64(hi-lo+1)/float64(lo) > 1.0/subBuckets {
			t.Fatalf("bucket %d = [%d, %d] is wider than 1/%d of its values", i, lo, hi, subBuckets)
		}
	}
	if _, hi := bucketRange(numBuckets - 1); hi != math.MaxInt64 {
		t.Fatalf("the last bucket ends at %d, not MaxInt64", hi)
	}
	r := rand.New(rand.NewPCG(1, 2))
	values := []int64{0, 1, 255, 256, 257, 511, 512, 1 << 40, math.MaxInt64}
	for range 10000 {
		values = append(values, r.Int64N(1<<r.IntN(63)+1))
	}
	for _, v := range values {
		lo, hi := bucketRange(bucketOf(v))
		if v < lo || v > hi {
			t.Fatalf("value %d in bucket %d = [%d, %d]", v, bucketOf(v), lo, hi)
		}
	}
}

// Quantiles agree with the exact order statistics of the recorded values within the
// histogram's precision, for distributions latencies really have.
func TestQuantilesMatchSortedSamples(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	dists := map[string]func() int64{
		"uniform from 0 to 10ms":  func() int64 { return r.Int64N(int64(10 * time.Millisecond)) },
		"exponential, mean 1ms":   func() int64 { return int64(r.ExpFloat64() * float64(time.Millisecond)) },
		"lognormal with a tail":   func() int64 { return int64(math.Exp(r.NormFloat64()*1.5) * float64(time.Millisecond)) },
		"small exact values":      func() int64 { return r.Int64N(200) },
		"one value many times":    func() int64 { return 1234567 },
		"bimodal: 1ms and 100 ms": func() int64 { return []int64{1e6, 1e8}[r.IntN(2)] + r.Int64N(1e5) },
	}
	for name, next := range dists {
		t.Run(name, func(t *testing.T) {
			var h Histogram
			samples := make([]int64, 20001)
			for i := range samples {
				samples[i] = next()
				h.Record(samples[i])
			}
			slices.Sort(samples)
			for _, q := range []float64{0, 0.01, 0.5, 0.9, 0.95, 0.99, 0.999, 1} {
				rank := max(int(math.Ceil(q*float64(len(samples)))), 1)
				want := samples[rank-1]
				got := h.Quantile(q)
				if diff := math.Abs(float64(got - want)); diff > float64(want)/subBuckets+1 {
					t.Errorf("q%v = %d, exact %d (off by %.2f%%)", q, got, want, 100*diff/float64(want))
				}
			}
			if h.Max() != samples[len(samples)-1] || h.Min() != samples[0] || h.Count() != uint64(len(samples)) {
				t.Errorf("max %d min %d count %d, want %d %d %d", h.Max(), h.Min(), h.Count(), samples[len(samples)-1], samples[0], len(samples))
			}
		})
	}
}

func TestEmptyHistogramSummarisesToZero(t *testing.T) {
	var h Histogram
	if s := h.Summary(); s != (Latency{}) {
		t.Fatalf("empty summary = %+v", s)
	}
}

func TestNegativeValuesCountAsZero(t *testing.T) {
	var h Histogram
	h.Record(-5)
	h.Record(10)
	if h.Min() != 0 || h.Quantile(0.5) != 0 || h.Max() != 10 {
		t.Fatalf("min %d p50 %d max %d", h.Min(), h.Quantile(0.5), h.Max())
	}
}

func TestSummaryIsInMilliseconds(t *testing.T) {
	var h Histogram
	for i := 1; i <= 100; i++ {
		h.Record(int64(i) * int64(time.Millisecond))
	}
	s := h.Summary()
	if s.Count != 100 || math.Abs(s.P50-50) > 0.5 || math.Abs(s.P99-99) > 1 || s.Max != 100 || math.Abs(s.Mean-50.5) > 1e-9 {
		t.Fatalf("summary %+v", s)
	}
}

// Record is called from every connection's goroutine at once.
func TestConcurrentRecordsAreAllCounted(t *testing.T) {
	var h Histogram
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 1000 {
				h.Record(int64(g*1000 + i))
			}
		})
	}
	wg.Wait()
	if h.Count() != 8000 || h.Min() != 0 || h.Max() != 7999 {
		t.Fatalf("count %d min %d max %d", h.Count(), h.Min(), h.Max())
	}
}

func TestSortedKeysPutStatusCodesFirstInNumericOrder(t *testing.T) {
	got := sortedKeys(map[string]int64{"timeout": 1, "503": 1, "429": 1, "connection refused": 1, "1000": 1})
	want := []string{"429", "503", "1000", "connection refused", "timeout"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func BenchmarkHistogramRecord(b *testing.B) {
	var h Histogram
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		v := int64(1)
		for pb.Next() {
			h.Record(v)
			v = (v*7 + 12345) & (1<<30 - 1)
		}
	})
}
