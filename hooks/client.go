package hooks

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Errors callers branch on; see the package doc for what each becomes at the service's edge.
var (
	// ErrNotEnabled means the hook called has no URL configured.
	ErrNotEnabled = errors.New("hook not enabled")
	// ErrUnavailable means the hook gave no usable answer in time (timeout, unreachable, no
	// free slot, an undefined status, a bad or oversized body). Callers fail closed.
	ErrUnavailable = errors.New("hook unavailable")
)

// Hook names one of the three hooks, as it appears in metrics, logs and errors.
type Hook string

// The hooks.
const (
	HookAuthorize Hook = "authorize"
	HookConnect   Hook = "connect"
	HookRPC       Hook = "rpc"
)

var allHooks = [...]Hook{HookAuthorize, HookConnect, HookRPC}

// Defaults of Config's fields, for flags to show.
const (
	DefaultTimeout         = 2 * time.Second
	DefaultMaxConcurrent   = 256
	DefaultMaxBodyBytes    = 64 << 10
	DefaultMaxCacheEntries = 65536
	DefaultUserAgent       = "switchboard-hooks"
)

// MaxCacheSeconds caps an authorize answer's cache_s: a backend cannot make a node hold on
// to an answer for longer than an hour, so a changed permission takes effect by then.
const MaxCacheSeconds = 3600

// Config configures a Client. Zero values mean the defaults named on each field.
type Config struct {
	// AuthorizeURL, ConnectURL and RPCURL are the hooks' URLs (http or https). An empty one
	// turns its hook off: its calls return ErrNotEnabled.
	AuthorizeURL string
	ConnectURL   string
	RPCURL       string
	// Secret is the HMAC-SHA256 key of the signature header, the webhook's secret. Empty
	// sends requests unsigned (with the timestamp header only).
	Secret string
	// Timeout bounds one call from its start: waiting for a slot, the request, and reading
	// the answer. Default DefaultTimeout (2s).
	Timeout time.Duration
	// MaxConcurrent bounds each hook's calls in flight on this node. A call that gets no
	// slot within Timeout fails with ErrUnavailable. Each hook has its own slots, so one
	// that hangs never starves the others. Default DefaultMaxConcurrent (256).
	MaxConcurrent int
	// MaxBodyBytes bounds an answer's body; a longer one is a bad answer (ErrUnavailable).
	// Default DefaultMaxBodyBytes (64 KiB).
	MaxBodyBytes int64
	// MaxCacheEntries bounds the authorize cache (see the package doc). Default
	// DefaultMaxCacheEntries (65536), a few MiB.
	MaxCacheEntries int
	// UserAgent is the requests' User-Agent. Default DefaultUserAgent.
	UserAgent string
	// Node is this node's id, the "node" of rpc requests. Default "node".
	Node string
	// Transport sends the requests, for a custom TLS or proxy setup. Default: a keep-alive
	// transport of the client's own that keeps up to MaxConcurrent idle connections per
	// host. Redirects are never followed either way.
	Transport http.RoundTripper
	// Logger receives the client's few logs (a hook answering nonsense, at most once a
	// minute per hook). Default slog.Default().
	Logger *slog.Logger
	// Registerer, if set, gets the metrics: switchboard_hook_calls_total{hook,outcome},
	// switchboard_hook_duration_seconds{hook}, switchboard_hook_cache_hits_total and
	// switchboard_hook_in_flight{hook}. Nil registers nothing.
	Registerer prometheus.Registerer
	// Now is the clock of the authorize cache's expiry, for tests. Default time.Now.
	// Request timestamps always use the real time.
	Now func() time.Time
}

func (c *Config) setDefaults() {
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxConcurrent <= 0 {
		c.MaxConcurrent = DefaultMaxConcurrent
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.MaxCacheEntries <= 0 {
		c.MaxCacheEntries = DefaultMaxCacheEntries
	}
	if c.UserAgent == "" {
		c.UserAgent = DefaultUserAgent
	}
	if c.Node == "" {
		c.Node = "node"
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Client calls a node's hooks. It is safe for concurrent use; build it with New, and Close
// it when the node stops.
type Client struct {
	cfg     Config
	http    *http.Client
	hooks   [len(allHooks)]*endpoint
	metrics *metrics

	mu      sync.Mutex // guards cache and flights
	cache   *cache
	flights map[AuthorizeRequest]*flight
}

// endpoint is one hook: its URL (empty: not enabled) and its slots.
type endpoint struct {
	index int // in allHooks
	hook  Hook
	url   string
	slots chan struct{}
	// warned is when a bad answer of this hook was last logged (unix nanos).
	warned atomic.Int64
}

// New builds a Client. It fails only for a URL that could never be posted to.
func New(cfg Config) (*Client, error) {
	cfg.setDefaults()
	c := &Client{
		cfg:     cfg,
		metrics: newMetrics(cfg.Registerer),
		cache:   newCache(cfg.MaxCacheEntries),
		flights: make(map[AuthorizeRequest]*flight),
	}
	for i, u := range [...]string{cfg.AuthorizeURL, cfg.ConnectURL, cfg.RPCURL} {
		if u != "" {
			if err := checkURL(u); err != nil {
				return nil, fmt.Errorf("hooks: %s URL: %w", allHooks[i], err)
			}
		}
		c.hooks[i] = &endpoint{index: i, hook: allHooks[i], url: u, slots: make(chan struct{}, cfg.MaxConcurrent)}
	}
	c.metrics.watchSlots(c.hooks[:])
	transport := cfg.Transport
	if transport == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConns = len(allHooks) * cfg.MaxConcurrent
		t.MaxIdleConnsPerHost = cfg.MaxConcurrent // every call in flight may come back to the pool
		transport = t
	}
	c.http = &http.Client{
		Transport: transport,
		// A 3xx is an answer like any other non-2xx: a hook is never sent elsewhere.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return c, nil
}

// Enabled reports whether hook has a URL configured.
func (c *Client) Enabled(hook Hook) bool {
	e := c.endpoint(hook)
	return e != nil && e.url != ""
}

// Close releases the idle keep-alive connections. Calls in flight finish; the Client stays
// usable (a later call opens connections again), so a second Close is harmless.
func (c *Client) Close() {
	c.http.CloseIdleConnections()
}

func (c *Client) endpoint(hook Hook) *endpoint {
	for i, h := range allHooks {
		if h == hook {
			return c.hooks[i]
		}
	}
	return nil
}

// checkURL refuses a hook URL that could never be posted to.
func checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q: want http(s)://host/...", raw)
	}
	return nil
}
