package service

import (
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-dev/switchboard/subscriptions"
)

// apiObserver returns the middleware that times every /v1 request, refusals included, into
// switchboard_http_request_duration_seconds{route,method,code}: the backend's view of the
// API's latency, for dashboards and alerts. The route is chi's pattern
// (/v1/users/{user}/messages), so the series stay few whatever the ids.
func (s *Server) apiObserver() func(http.Handler) http.Handler {
	hist := register(s.cfg.Registerer, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "switchboard_http_request_duration_seconds",
		Help:    "Backend API (/v1) requests, from the first byte read to the answer written, by route pattern, method and status code.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	}, []string{"route", "method", "code"}))
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
			next.ServeHTTP(ww, r)
			route := "unmatched"
			if rc := chi.RouteContext(r.Context()); rc != nil && rc.RoutePattern() != "" {
				route = rc.RoutePattern()
			}
			code := ww.Status()
			if code == 0 {
				code = http.StatusOK
			}
			hist.WithLabelValues(route, r.Method, strconv.Itoa(code)).Observe(time.Since(start).Seconds())
		})
	}
}

// presetSeries creates the labelled counters' series at zero, so that /metrics shows them
// before the first event and rate() in alert rules has a series to work on from the start
// (a series that appears with its first increment hides that increment from rate()).
func (m *metrics) presetSeries() {
	for _, source := range []string{"http", "ws"} {
		for _, kind := range []string{"direct", "room"} {
			m.messagesIn.WithLabelValues(source, kind)
		}
	}
	for _, d := range []disconnect{disconnectSlow, disconnectDraining, disconnectServerError, disconnectPanic} {
		m.rejected.WithLabelValues(d.label)
	}
	for _, reason := range []string{"rate_limited", "protocol_error", "too_large", "kicked", "lagged", "redis_unavailable"} {
		m.rejected.WithLabelValues(reason)
	}
	for _, kind := range []string{limitKindSend, limitKindJoin, limitKindEvent, limitKindUserConn, limitKindIPConn, limitKindRead,
		subscriptions.QuotaRoomsPerUser, subscriptions.QuotaRoomMembers} {
		m.limited.WithLabelValues(kind)
	}
}
