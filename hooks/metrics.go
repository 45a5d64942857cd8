package hooks

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// outcome is how one call ended, the outcome label of switchboard_hook_calls_total.
type outcome uint8

const (
	outcomeOK          outcome = iota // a usable 2xx answer (authorize: allowed)
	outcomeDenied                     // authorize: a 2xx {"allow":false}
	outcome3xx                        // a redirect, never followed
	outcome4xx                        // authorize: refused; connect: 401/403 refuse (others: 503)
	outcome5xx                        // the backend failed
	outcomeTimeout                    // no answer within the timeout
	outcomeUnreachable                // no connection, or it broke
	outcomeBadAnswer                  // a 2xx the hook cannot use, a body over the limit, a strange status
	outcomeBusy                       // no free slot within the timeout
	outcomeCanceled                   // the caller gave up (its context ended) first
	numOutcomes
)

var outcomeNames = [numOutcomes]string{"ok", "denied", "3xx", "4xx", "5xx", "timeout", "unreachable", "bad_answer", "busy", "canceled"}

func (o outcome) String() string { return outcomeNames[o] }

// statusOutcome is the outcome of a non-2xx status.
func statusOutcome(status int) outcome {
	switch status / 100 {
	case 3:
		return outcome3xx
	case 4:
		return outcome4xx
	case 5:
		return outcome5xx
	}
	return outcomeBadAnswer
}

// metrics are the client's Prometheus metrics, every child resolved once so that a call
// records itself without looking labels up.
type metrics struct {
	calls     [len(allHooks)][numOutcomes]prometheus.Counter
	duration  [len(allHooks)]prometheus.Observer
	cacheHits prometheus.Counter
	reg       prometheus.Registerer
}

func newMetrics(reg prometheus.Registerer) *metrics {
	if reg == nil {
		reg = nopRegisterer{}
	}
	m := &metrics{reg: reg}
	calls := register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "switchboard_hook_calls_total",
		Help: "Calls to the backend's hooks, by hook and outcome (ok, denied, 3xx, 4xx, 5xx, timeout, unreachable, bad_answer, busy, canceled). Authorize cache hits are not calls.",
	}, []string{"hook", "outcome"}))
	duration := register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "switchboard_hook_duration_seconds",
		Help:    "How long calls to the backend's hooks took, waiting for a slot included, whatever their outcome.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	}, []string{"hook"}))
	m.cacheHits = register(reg, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "switchboard_hook_cache_hits_total",
		Help: "Authorize questions answered from this node's cache (cache_s) without a call.",
	}))
	for i, h := range allHooks {
		m.duration[i] = duration.WithLabelValues(string(h))
		for o := range numOutcomes {
			m.calls[i][o] = calls.WithLabelValues(string(h), o.String())
		}
	}
	return m
}

// watchSlots registers the gauge of calls in flight, read from the hooks' slots when
// scraped, so that taking a slot costs nothing more.
func (m *metrics) watchSlots(endpoints []*endpoint) {
	for _, e := range endpoints {
		register(m.reg, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "switchboard_hook_in_flight",
			Help:        "Calls to the hook in flight on this node, waiting for a slot excluded (at most the client's MaxConcurrent).",
			ConstLabels: prometheus.Labels{"hook": string(e.hook)},
		}, func() float64 { return float64(len(e.slots)) }))
	}
}

func (m *metrics) record(e *endpoint, o outcome, seconds float64) {
	m.calls[e.index][o].Inc()
	m.duration[e.index].Observe(seconds)
}

// register registers c on reg and returns it, or the collector registered before it under
// the same names, so that two clients built on one registry share their metrics instead
// of panicking (the in-flight gauge then reads the first client's slots). Any other
// refusal is a programming error and panics.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	err := reg.Register(c)
	if err == nil {
		return c
	}
	var dup prometheus.AlreadyRegisteredError
	if errors.As(err, &dup) {
		if existing, ok := dup.ExistingCollector.(C); ok {
			return existing
		}
	}
	panic(fmt.Sprintf("hooks: registering metrics: %v", err))
}

// nopRegisterer registers nothing: a client without a Registerer still counts, unseen.
type nopRegisterer struct{}

func (nopRegisterer) Register(prometheus.Collector) error  { return nil }
func (nopRegisterer) MustRegister(...prometheus.Collector) {}
func (nopRegisterer) Unregister(prometheus.Collector) bool { return false }
