package service

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/switchboard-dev/switchboard/events"
	"github.com/switchboard-dev/switchboard/subscriptions"
)

// NewRegistry returns a Prometheus registry with the Go runtime and process metrics, for
// main to hand to every part of the node (NewHubMetrics, Config.Registerer) so that
// /metrics shows them all.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// register registers c on reg and returns it, or the collector registered before it under
// the same names: two parts built on one registry share their metrics instead of panicking.
// Any other refusal is a programming error (one name, two meanings) and panics.
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
	panic(fmt.Sprintf("service: registering metrics: %v", err))
}

// HubMetrics are the hub's Prometheus metrics: a subscriptions.Observer. Build them with
// NewHubMetrics on the registry the server serves.
type HubMetrics struct {
	publish     prometheus.Histogram
	dispatch    prometheus.Histogram
	redisErrors prometheus.Counter
}

var _ subscriptions.Observer = (*HubMetrics)(nil)

// NewHubMetrics registers the hub's metrics on reg, for subscriptions.Config.Observer. A
// second call on one registry returns metrics that share the first one's series.
func NewHubMetrics(reg prometheus.Registerer) *HubMetrics {
	latencyBuckets := []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}
	return &HubMetrics{
		publish: register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "switchboard_publish_seconds", Help: "Round trips of the append+publish script (one pipeline of deliveries).", Buckets: latencyBuckets,
		})),
		dispatch: register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "switchboard_delivery_lag_seconds", Help: "From Redis storing a message to this node dispatching it to its connections (ms resolution).", Buckets: latencyBuckets,
		})),
		redisErrors: register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchboard_redis_errors_total", Help: "Failed Redis calls.",
		})),
	}
}

// ObservePublish implements subscriptions.Observer.
func (m *HubMetrics) ObservePublish(d time.Duration, _ int, err error) {
	m.publish.Observe(d.Seconds())
	if err != nil {
		m.redisErrors.Inc()
	}
}

// ObserveDispatch implements subscriptions.Observer.
func (m *HubMetrics) ObserveDispatch(lag time.Duration) { m.dispatch.Observe(max(lag, 0).Seconds()) }

// ObserveRedisError implements subscriptions.Observer.
func (m *HubMetrics) ObserveRedisError() { m.redisErrors.Inc() }

// metrics are the server's own counters, updated on its hot paths.
type metrics struct {
	messagesIn  *prometheus.CounterVec
	httpDirect  prometheus.Counter // messagesIn{http,direct}, resolved once for the hot path
	messagesOut prometheus.Counter
	rejected    *prometheus.CounterVec
	limited     *prometheus.CounterVec
	// copyFailures counts client DMs accepted (the recipient has them) whose sender's copy
	// was not stored: acked with "copy":false.
	copyFailures prometheus.Counter
}

// newMetrics registers the server's counters on reg.
func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		messagesIn: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_messages_in_total", Help: "Messages accepted by this node, by source (http, ws) and kind (direct, room).",
		}, []string{"source", "kind"})),
		messagesOut: register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchboard_messages_out_total", Help: "Messages queued to this node's WebSockets (live, replayed and caught up).",
		})),
		rejected: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_connections_closed_total", Help: "WebSockets closed by the server, once each, by reason (slow_consumer, rate_limited, protocol_error, too_large, panic, kicked, draining, lagged, redis_unavailable, server_error).",
		}, []string{"reason"})),
		limited: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_limited_total", Help: "Client actions refused by a per-user or per-IP rate limit (send, join, event, user_conn, ip_conn) or a quota (rooms_per_user, room_members).",
		}, []string{"limit"})),
		copyFailures: register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchboard_dm_copy_failures_total", Help: "Client direct messages delivered to their recipient whose copy in the sender's own stream failed (acked with \"copy\":false).",
		})),
	}
	m.httpDirect = m.messagesIn.WithLabelValues("http", "direct")
	m.presetSeries()
	return m
}

// metricsHandler serves g at /metrics; nil when there is nothing to serve.
func metricsHandler(g prometheus.Gatherer) http.Handler {
	if g == nil {
		return nil
	}
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{})
}

// statsCollector emits the series read at scrape time from one snapshot of the hub's
// stats and one of the event queue's, however many series they feed.
type statsCollector struct {
	hub    *subscriptions.Hub
	events *events.Queue // nil: no event series

	connections, users, reconnects, caughtUp, replayed *prometheus.Desc
	queued, sent, retried, lag, dropped                *prometheus.Desc
}

func newStatsCollector(hub *subscriptions.Hub, q *events.Queue) *statsCollector {
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &statsCollector{
		hub:         hub,
		events:      q,
		connections: desc("switchboard_connections", "Open WebSockets on this node."),
		users:       desc("switchboard_users", "Users with a WebSocket on this node (= subscribed user channels)."),
		reconnects:  desc("switchboard_pubsub_reconnects_total", "Pub/Sub connections rebuilt after a loss or a quiet period."),
		caughtUp:    desc("switchboard_caught_up_messages_total", "Messages delivered from streams after a Pub/Sub reconnect."),
		replayed:    desc("switchboard_replayed_messages_total", "Messages replayed to connections that resumed with since."),
		queued:      desc("switchboard_events_queued_total", "Backend events this node queued."),
		sent:        desc("switchboard_events_sent_total", "Backend events the webhook acknowledged (2xx) from this node."),
		retried:     desc("switchboard_events_retried_total", "Webhook requests that failed and will be retried."),
		lag:         desc("switchboard_events_lag_seconds", "Age of the oldest event in the last request the webhook acknowledged."),
		dropped: desc("switchboard_events_dropped_total",
			"Backend events dropped or refused, by reason: expired (older than 24h), malformed, queue_bytes (the queue's byte budget was full), user_share (a client event past its user's share).",
			"reason"),
	}
}

// Describe implements prometheus.Collector.
func (c *statsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.connections
	ch <- c.users
	ch <- c.reconnects
	ch <- c.caughtUp
	ch <- c.replayed
	if c.events != nil {
		ch <- c.queued
		ch <- c.sent
		ch <- c.retried
		ch <- c.lag
		ch <- c.dropped
	}
}

// Collect implements prometheus.Collector.
func (c *statsCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	st := c.hub.Stats()
	gauge(c.connections, float64(st.Connections))
	gauge(c.users, float64(st.Users))
	counter(c.reconnects, float64(st.PubSubReconnects))
	counter(c.caughtUp, float64(st.CaughtUp))
	counter(c.replayed, float64(st.Replayed))
	if c.events == nil {
		return
	}
	ev := c.events.Stats()
	counter(c.queued, float64(ev.Queued))
	counter(c.sent, float64(ev.Sent))
	counter(c.retried, float64(ev.Retried))
	gauge(c.lag, ev.Lag.Seconds())
	counter(c.dropped, float64(ev.DroppedExpired), "expired")
	counter(c.dropped, float64(ev.DroppedMalformed), "malformed")
	counter(c.dropped, float64(ev.DroppedQueueBytes), "queue_bytes")
	counter(c.dropped, float64(ev.DroppedUserShare), "user_share")
}
