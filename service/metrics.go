package service

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/switchboard-dev/switchboard/events"
	"github.com/switchboard-dev/switchboard/subscriptions"
)

// Metrics are the node's Prometheus metrics. Build them with NewMetrics, pass them to the
// hub as its Observer and to the server in its Config.
type Metrics struct {
	reg         *prometheus.Registry
	messagesIn  *prometheus.CounterVec
	httpDirect  prometheus.Counter // messagesIn{http,direct}, resolved once for the hot path
	messagesOut prometheus.Counter
	publish     prometheus.Histogram
	dispatch    prometheus.Histogram
	redisErrors prometheus.Counter
	rejected    *prometheus.CounterVec
	limited     *prometheus.CounterVec
}

var _ subscriptions.Observer = (*Metrics)(nil)

// NewMetrics registers Switchboard's metrics, with Go runtime and process metrics, on a
// registry of their own.
func NewMetrics() *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	latency := []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}
	m := &Metrics{
		reg: reg,
		messagesIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_messages_in_total", Help: "Messages accepted by this node, by source (http, ws) and kind (direct, room).",
		}, []string{"source", "kind"}),
		messagesOut: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchboard_messages_out_total", Help: "Messages queued to this node's WebSockets (live, replayed and caught up).",
		}),
		publish: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "switchboard_publish_seconds", Help: "Round trips of the append+publish script (one pipeline of deliveries).", Buckets: latency,
		}),
		dispatch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "switchboard_delivery_lag_seconds", Help: "From Redis storing a message to this node dispatching it to its connections (ms resolution).", Buckets: latency,
		}),
		redisErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchboard_redis_errors_total", Help: "Failed Redis calls.",
		}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_connections_closed_total", Help: "WebSockets closed by the server, once each, by reason (slow_consumer, rate_limited, protocol_error, panic, kicked, draining, lagged, redis_unavailable, server_error).",
		}, []string{"reason"}),
	}
	m.limited = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "switchboard_limited_total", Help: "Client actions refused by a per-user or per-IP rate limit (send, join, event, user_conn, ip_conn) or a quota (rooms_per_user, room_members).",
	}, []string{"limit"})
	reg.MustRegister(m.limited)
	m.httpDirect = m.messagesIn.WithLabelValues("http", "direct")
	reg.MustRegister(m.messagesIn, m.messagesOut, m.publish, m.dispatch, m.redisErrors, m.rejected)
	return m
}

// register adds the gauges and counters read from the hub and server at scrape time.
func (m *Metrics) register(s *Server) {
	stats := func(f func(subscriptions.Stats) float64) func() float64 {
		return func() float64 { return f(s.hub.Stats()) }
	}
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "switchboard_connections", Help: "Open WebSockets on this node."},
			stats(func(st subscriptions.Stats) float64 { return float64(st.Connections) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "switchboard_users", Help: "Users with a WebSocket on this node (= subscribed user channels)."},
			stats(func(st subscriptions.Stats) float64 { return float64(st.Users) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "switchboard_pubsub_reconnects_total", Help: "Pub/Sub connections rebuilt after a loss or a quiet period."},
			stats(func(st subscriptions.Stats) float64 { return float64(st.PubSubReconnects) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "switchboard_caught_up_messages_total", Help: "Messages delivered from streams after a Pub/Sub reconnect."},
			stats(func(st subscriptions.Stats) float64 { return float64(st.CaughtUp) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "switchboard_replayed_messages_total", Help: "Messages replayed to connections that resumed with since."},
			stats(func(st subscriptions.Stats) float64 { return float64(st.Replayed) })),
	)
	if q := s.cfg.Events; q != nil {
		ev := func(f func(events.Stats) float64) func() float64 { return func() float64 { return f(q.Stats()) } }
		m.reg.MustRegister(
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "switchboard_events_queued_total", Help: "Backend events this node queued."},
				ev(func(st events.Stats) float64 { return float64(st.Queued) })),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "switchboard_events_sent_total", Help: "Backend events the webhook acknowledged (2xx) from this node."},
				ev(func(st events.Stats) float64 { return float64(st.Sent) })),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "switchboard_events_retried_total", Help: "Webhook requests that failed and will be retried."},
				ev(func(st events.Stats) float64 { return float64(st.Retried) })),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "switchboard_events_lag_seconds", Help: "Age of the oldest event in the last request the webhook acknowledged."},
				ev(func(st events.Stats) float64 { return st.Lag.Seconds() })),
		)
		// One series per reason: expired (older than 24h), malformed, queue_bytes (the byte
		// budget was full), user_share (a client event past its user's share).
		for reason, f := range map[string]func(events.Stats) float64{
			"expired":     func(st events.Stats) float64 { return float64(st.DroppedExpired) },
			"malformed":   func(st events.Stats) float64 { return float64(st.DroppedMalformed) },
			"queue_bytes": func(st events.Stats) float64 { return float64(st.DroppedQueueBytes) },
			"user_share":  func(st events.Stats) float64 { return float64(st.DroppedUserShare) },
		} {
			m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name:        "switchboard_events_dropped_total",
				Help:        "Backend events dropped or refused, by reason: expired (older than 24h), malformed, queue_bytes (the queue's byte budget was full), user_share (a client event past its user's share).",
				ConstLabels: prometheus.Labels{"reason": reason},
			}, ev(f)))
		}
	}
}

// ObservePublish implements subscriptions.Observer.
func (m *Metrics) ObservePublish(d time.Duration, _ int, err error) {
	m.publish.Observe(d.Seconds())
	if err != nil {
		m.redisErrors.Inc()
	}
}

// ObserveDispatch implements subscriptions.Observer.
func (m *Metrics) ObserveDispatch(lag time.Duration) { m.dispatch.Observe(max(lag, 0).Seconds()) }

// ObserveRedisError implements subscriptions.Observer.
func (m *Metrics) ObserveRedisError() { m.redisErrors.Inc() }

func (m *Metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}
