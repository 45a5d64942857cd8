package service

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5/middleware"
	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"

	"github.com/switchboard-dev/switchboard/subscriptions"
)

// Limit is a rate: Rate events per Per, in bursts of up to Burst. A negative Rate turns the
// limit off.
type Limit struct {
	Rate  int
	Per   time.Duration
	Burst int
}

func (l Limit) off() bool { return l.Rate < 0 }

func (l Limit) String() string {
	if l.off() {
		return "off"
	}
	per := l.Per.String()
	switch l.Per {
	case time.Second:
		per = "s"
	case time.Minute:
		per = "m"
	case time.Hour:
		per = "h"
	}
	return fmt.Sprintf("%d/%s,%d", l.Rate, per, l.Burst)
}

// ParseLimit reads a limit written as RATE/PERIOD[,BURST] ("50/s,100", "1/10s,20",
// "600/m") or "off". PERIOD is s, m, h or a Go duration; BURST defaults to RATE.
func ParseLimit(s string) (Limit, error) {
	if s == "off" {
		return Limit{Rate: -1}, nil
	}
	bad := fmt.Errorf("limit %q: want RATE/PERIOD[,BURST] such as 50/s,100, or off", s)
	spec, burst, hasBurst := strings.Cut(s, ",")
	rate, per, ok := strings.Cut(spec, "/")
	if !ok {
		return Limit{}, bad
	}
	var l Limit
	var err error
	if l.Rate, err = strconv.Atoi(rate); err != nil || l.Rate < 1 {
		return Limit{}, bad
	}
	switch per {
	case "s":
		l.Per = time.Second
	case "m":
		l.Per = time.Minute
	case "h":
		l.Per = time.Hour
	default:
		if l.Per, err = time.ParseDuration(per); err != nil || l.Per < time.Millisecond {
			return Limit{}, bad
		}
	}
	l.Burst = l.Rate
	if hasBurst {
		if l.Burst, err = strconv.Atoi(burst); err != nil || l.Burst < 1 {
			return Limit{}, bad
		}
	}
	return l, nil
}

// Kinds of limits, as named in Redis keys and in switchboard_limited_total.
const (
	limitKindSend     = "send"
	limitKindJoin     = "join"
	limitKindEvent    = "event"
	limitKindUserConn = "user_conn"
	limitKindIPConn   = "ip_conn"
	limitKindRead     = "read" // a connection's history and presence frames (history.go)
)

var errLimiterUnavailable = fmt.Errorf("%w: rate limit check failed", subscriptions.ErrUnavailable)

// LimiterConfig configures a Limiter. Zero values mean the defaults named on each field.
type LimiterConfig struct {
	// Prefix starts every Redis key, as the hub's and the event queue's Prefix; the library
	// puts "rate:" before it ("rate:{sb:limit:user:bob}:send"). Default "sb".
	Prefix string
	// Sends limits each user's client sends, DMs and room sends together, over all its
	// connections on every node. Default 50/s, bursts of 100.
	Sends Limit
	// Joins limits each user's client joins. Default 10/s, bursts of 100.
	Joins Limit
	// Events limits each user's client events. Default 10/s, bursts of 50.
	Events Limit
	// UserConns limits each user's new WebSocket connections. Default 1/s, bursts of 30.
	UserConns Limit
	// IPConns limits new WebSocket connections per client IP (an IPv6 client per /64, which
	// one host usually holds whole). Default 20/s, bursts of 200.
	IPConns Limit
	// TrustedProxies lists the CIDRs of reverse proxies whose X-Forwarded-For names the
	// client IP. Empty: the TCP peer is the client, which behind a load balancer is the
	// load balancer.
	TrustedProxies []string
}

func (c *LimiterConfig) setDefaults() {
	if c.Prefix == "" {
		c.Prefix = "sb"
	}
	// Sends match the per-connection frame limit, now for all of a user's connections.
	for _, l := range []struct {
		dst *Limit
		def Limit
	}{
		{&c.Sends, Limit{Rate: 50, Per: time.Second, Burst: 100}},
		{&c.Joins, Limit{Rate: 10, Per: time.Second, Burst: 100}},
		{&c.Events, Limit{Rate: 10, Per: time.Second, Burst: 50}},
		{&c.UserConns, Limit{Rate: 1, Per: time.Second, Burst: 30}},
		{&c.IPConns, Limit{Rate: 20, Per: time.Second, Burst: 200}},
	} {
		if *l.dst == (Limit{}) {
			*l.dst = l.def
		}
	}
}

// Limiter keeps per-user and per-IP rate limits in Redis (GCRA, one script call per check),
// so that they hold across a user's connections and across nodes: reconnecting, or
// connecting to another node, starts no new budget. Each key lives at most one burst's worth
// of time (Burst/Rate×Per) after its last use.
type Limiter struct {
	rl  *redis_rate.Limiter
	cfg LimiterConfig
	// fromXFF finds the client IP behind trusted proxies; nil without TrustedProxies.
	fromXFF func(http.Handler) http.Handler
}

// NewLimiter builds a limiter on rdb, a single Redis or a Redis Cluster.
func NewLimiter(rdb redis.UniversalClient, cfg LimiterConfig) (*Limiter, error) {
	cfg.setDefaults()
	l := &Limiter{rl: redis_rate.NewLimiter(rdb), cfg: cfg}
	if len(cfg.TrustedProxies) > 0 {
		for _, p := range cfg.TrustedProxies {
			if _, err := netip.ParsePrefix(p); err != nil {
				return nil, fmt.Errorf("trusted proxy %q: %w", p, err)
			}
		}
		l.fromXFF = middleware.ClientIPFromXFF(cfg.TrustedProxies...)
	}
	return l, nil
}

// rateLimitedError is a refusal by a rate limit; classify maps it to 429 rate_limited with
// Retry-After.
type rateLimitedError struct {
	kind       string
	retryAfter time.Duration
}

func (e *rateLimitedError) Error() string {
	switch e.kind {
	case limitKindUserConn:
		return "too many new connections for this user; retry later"
	case limitKindIPConn:
		return "too many new connections from this address; retry later"
	}
	return "too many " + e.kind + "s from this user; slow down"
}

// allow takes one event from subject's budget of kind. Over the limit it returns a
// *rateLimitedError; when Redis does not answer, an error matching
// subscriptions.ErrUnavailable, so that the action fails closed as it would anyway.
func (l *Limiter) allow(ctx context.Context, kind, subject string, lim Limit) error {
	if l == nil || lim.off() {
		return nil
	}
	key := "{" + l.cfg.Prefix + ":limit:" + subject + "}:" + kind
	res, err := l.rl.Allow(ctx, key, redis_rate.Limit{Rate: lim.Rate, Burst: lim.Burst, Period: lim.Per})
	if err != nil {
		// Not logged: with Redis down every frame would log; the client gets unavailable.
		return fmt.Errorf("%w: %w", errLimiterUnavailable, err)
	}
	if res.Allowed == 0 {
		return &rateLimitedError{kind: kind, retryAfter: res.RetryAfter}
	}
	return nil
}

// clientAddr returns the client's address: the TCP peer, or the client behind a trusted
// proxy (a nil Limiter trusts none). The zero Addr when there is none to read.
func (l *Limiter) clientAddr(r *http.Request) netip.Addr {
	var ip netip.Addr
	if l != nil && l.fromXFF != nil {
		l.fromXFF(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
			ip = middleware.GetClientIPAddr(r.Context())
		})).ServeHTTP(nil, r)
	} else if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		ip = ap.Addr().Unmap()
	} else if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		ip, _ = netip.ParseAddr(host)
	}
	return ip
}

// clientIP returns the key a connection's client IP is limited under: clientAddr, IPv6
// by /64.
func (l *Limiter) clientIP(r *http.Request) string {
	ip := l.clientAddr(r)
	if !ip.IsValid() {
		return "ip:unknown" // every request without a readable address shares one budget
	}
	if ip.Is6() {
		p, _ := ip.WithZone("").Prefix(64)
		return "ip:" + p.String()
	}
	return "ip:" + ip.String()
}

// allowIP checks a WebSocket request against its client IP's connection limit.
func (l *Limiter) allowIP(r *http.Request) error {
	if l == nil {
		return nil
	}
	return l.allow(r.Context(), limitKindIPConn, l.clientIP(r), l.cfg.IPConns)
}

// allowUserConn checks a new WebSocket of user against the user's connection limit.
func (l *Limiter) allowUserConn(ctx context.Context, user string) error {
	if l == nil {
		return nil
	}
	return l.allow(ctx, limitKindUserConn, "user:"+user, l.cfg.UserConns)
}

// commandLimit returns the per-user limit a client command counts against, if any: sends
// (to a user or a room) share one, a leave has none.
func (l *Limiter) commandLimit(cmd command) (string, Limit, bool) {
	switch cmd.(type) {
	case sendDM, sendRoom:
		return limitKindSend, l.cfg.Sends, true
	case joinCmd:
		return limitKindJoin, l.cfg.Joins, true
	case eventCmd:
		return limitKindEvent, l.cfg.Events, true
	}
	return "", Limit{}, false
}

// countLimited counts a refusal by a rate limit or a quota in switchboard_limited_total.
func (s *Server) countLimited(err error) {
	var rl *rateLimitedError
	var qe *subscriptions.QuotaError
	switch {
	case errors.As(err, &rl):
		s.metrics.limited.WithLabelValues(rl.kind).Inc()
	case errors.As(err, &qe):
		s.metrics.limited.WithLabelValues(qe.Quota).Inc()
	}
}
