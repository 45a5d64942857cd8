// Package service is Switchboard's edge: the HTTP API, the WebSocket endpoint, auth and the
// admin views, on top of a subscriptions.Hub.
package service

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/lxzan/gws"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-dev/switchboard/events"
	"github.com/switchboard-dev/switchboard/hooks"
	"github.com/switchboard-dev/switchboard/subscriptions"
	"github.com/switchboard-dev/switchboard/tokens"
)

// Config configures a Server. Zero values mean the defaults named on each field.
type Config struct {
	// Tokens verifies user tokens (tokens.New). Nil means dev auth: /ws?user=ID, and every
	// join and direct message allowed.
	Tokens *tokens.Verifier
	// APIKey is the bearer key for /v1. Empty leaves /v1 open.
	APIKey string
	// AdminKey is the bearer key for /admin. Empty leaves /admin open.
	AdminKey string
	// AllowedOrigins lists the origins allowed to open /ws ("*" for any). Empty allows only
	// the server's own origin. Requests without an Origin header are not browsers and pass.
	AllowedOrigins []string
	// MaxMessageBytes is the largest payload, HTTP or WebSocket. Default 65536.
	MaxMessageBytes int
	// PingInterval is how often the server pings each WebSocket. Default 20s.
	PingInterval time.Duration
	// ReadTimeout drops a WebSocket that sends nothing, not even a pong, for this long.
	// Default 2×PingInterval + 5s.
	ReadTimeout time.Duration
	// WriteTimeout bounds one write to a WebSocket. Default 10s.
	WriteTimeout time.Duration
	// MaxQueueMessages and MaxQueueBytes bound a connection's outgoing queue; a connection
	// that falls further behind is closed with 1013 and resumes. Defaults 4096 and 16 MiB.
	MaxQueueMessages int
	MaxQueueBytes    int
	// Assets are the browser app's static files (index.html, admin.html, assets/). Nil
	// serves no UI.
	Assets fs.FS
	// MaxConnsPerUser caps one user's WebSockets on this node; more are refused with 429.
	// Default 32.
	MaxConnsPerUser int
	// FrameRate and FrameBurst rate-limit each connection's frames, control and
	// continuation frames included (a token bucket): a message with a frame over the limit
	// gets an error frame with code rate_limited, and a connection with more than
	// FrameBurst frames refused (a count that falls by FrameBurst every 10 s) is closed
	// with 1008. Defaults 50/s and 100.
	FrameRate  float64
	FrameBurst int
	// Limiter keeps the per-user limits on client sends, joins and events and the per-user
	// and per-IP limits on new WebSockets, in Redis, across connections and nodes (see
	// NewLimiter). Nil: none, only the per-connection frame limit and MaxConnsPerUser.
	Limiter *Limiter
	// Events queues backend events (webhook) and counts presence. Nil: no events, and
	// presence answers from the Pub/Sub subscriber count alone.
	Events *events.Queue
	// Registerer takes the server's metrics. Main passes one registry (NewRegistry) to every
	// part of the node, the hub's NewHubMetrics included. Default: a registry of the
	// server's own, so that two servers in one process never collide.
	Registerer prometheus.Registerer
	// Gatherer is what /metrics serves. Default: the Registerer if it is also a Gatherer
	// (a *prometheus.Registry is), else no /metrics.
	Gatherer prometheus.Gatherer
	// DrainDelay is how long a draining node stays up answering /readyz with 503 before it
	// closes its listener and WebSockets, for load balancers that poll readiness. Default 0.
	DrainDelay time.Duration
	// ShutdownTimeout bounds the graceful drain. Default 5s.
	ShutdownTimeout time.Duration
	// Logger receives the server's logs. Default slog.Default().
	Logger *slog.Logger
	// Hooks calls the backend's hooks: authorize (a join or a direct message the token does
	// not grant), connect (who a /ws request without a token is) and rpc. Nil, or a hook
	// without its URL: that hook is off.
	Hooks *hooks.Client
	// Compression offers permessage-deflate (RFC 7692) on /ws: a client that asks for it is
	// sent messages of 512 bytes and more compressed, by gws's compressor without context
	// takeover (each message on its own, so no window is held per connection), and may send
	// compressed messages. Default off: compression costs CPU for every message sent to such
	// a client (see docs/deployment.md, "Compression").
	Compression bool
	// DevHosts lists the Host names dev mode (no Tokens) serves besides loopback ones
	// (localhost, *.localhost, 127.0.0.0/8, [::1]); "*" allows any. Default none: a page on
	// another name, even one that resolves here (DNS rebinding), is refused.
	DevHosts []string
}

func (c *Config) setDefaults() {
	if c.MaxMessageBytes <= 0 {
		c.MaxMessageBytes = 65536
	}
	if c.PingInterval <= 0 {
		c.PingInterval = 20 * time.Second
	}
	if c.ReadTimeout <= 0 {
		c.ReadTimeout = 2*c.PingInterval + 5*time.Second
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.MaxQueueMessages <= 0 {
		c.MaxQueueMessages = 4096
	}
	if c.MaxQueueBytes <= 0 {
		c.MaxQueueBytes = 16 << 20
	}
	if c.MaxConnsPerUser <= 0 {
		c.MaxConnsPerUser = 32
	}
	if c.FrameRate <= 0 {
		c.FrameRate = 50
	}
	if c.FrameBurst <= 0 {
		c.FrameBurst = 100
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Registerer == nil {
		c.Registerer = NewRegistry()
	}
	if g, ok := c.Registerer.(prometheus.Gatherer); ok && c.Gatherer == nil {
		c.Gatherer = g
	}
}

// maxFramePayload is the largest WebSocket message a client may send: MaxMessageBytes and
// room for the frame's own fields around a payload of that size.
func (c *Config) maxFramePayload() int { return c.MaxMessageBytes + 4096 }

// Server serves Switchboard's HTTP API and WebSockets for one node.
type Server struct {
	hub      *subscriptions.Hub
	cfg      Config
	log      *slog.Logger
	upgrader *gws.Upgrader
	router   chi.Router
	metrics  *metrics

	// ctx outlives requests: connection-lifetime work hangs off it, not off r.Context().
	ctx      context.Context
	cancel   context.CancelFunc
	draining atomic.Bool

	slowCloses atomic.Int64 // connections closed with 1013 for falling behind
	connSeq    atomic.Int64 // numbers this node's connections for presence

	panicHook atomic.Pointer[func(user, where string)] // tests only: see testPanic

	mu      sync.Mutex
	clients map[*client]struct{}
	wg      sync.WaitGroup // connection goroutines
	writes  *writeQueue    // the connections' writes that never wait (see outbox.drainNow)

	rpcCalls   chan func()  // hands an rpc call to an idle call goroutine (goRPC)
	rpcStarted atomic.Int64 // call goroutines started, for tests
}

// wsReadBufferSize is each WebSocket's read buffer, held while it is open: client frames
// are small, and a larger one is read past the buffer. 1 KiB instead of 4 saves 3 KiB a
// connection.
const wsReadBufferSize = 1024

// New builds a server for hub.
func New(hub *subscriptions.Hub, cfg Config) *Server {
	cfg.setDefaults()
	s := &Server{
		hub:      hub,
		cfg:      cfg,
		log:      cfg.Logger,
		clients:  make(map[*client]struct{}),
		rpcCalls: make(chan func()),
		writes:   newWriteQueue(runtime.GOMAXPROCS(0)),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.upgrader = gws.NewUpgrader(&wsHandler{s: s}, &gws.ServerOption{
		// The frame guard refuses larger frames first, with its own close (see linger);
		// this is gws's own check, the same limit.
		ReadMaxPayloadSize: cfg.maxFramePayload(),
		ReadBufferSize:     wsReadBufferSize,
		CheckUtf8Enabled:   true,
		Recovery:           gws.Recovery,
		HandshakeTimeout:   5 * time.Second,
		// Compressed writes go through gws (see compressedWriter), which refuses payloads
		// over this; room for a largest message's frame sent as base64.
		WriteMaxPayloadSize: 2 * cfg.maxFramePayload(),
		PermessageDeflate:   gws.PermessageDeflate{Enabled: cfg.Compression},
	})
	s.metrics = newMetrics(cfg.Registerer)
	// One collector per registry reads the hub and the queue at scrape time; a second
	// server on the same registry shares the counters above but not these.
	if err := cfg.Registerer.Register(newStatsCollector(hub, cfg.Events)); err != nil {
		s.log.Warn("another server reports its connections on this metrics registry; this one's are not exported", "err", err)
	}
	s.router = s.routes()
	return s
}

// SlowConsumerCloses returns how many connections were closed for falling behind.
func (s *Server) SlowConsumerCloses() int64 { return s.slowCloses.Load() }

// Handler returns the server's HTTP handler.
func (s *Server) Handler() http.Handler { return s.router }

func (s *Server) routes() chi.Router {
	r := chi.NewRouter()
	// Under /v1 the key is checked before a 404 or 405, so that without it nothing tells
	// which endpoints exist.
	apiKey := s.requireKey(s.cfg.APIKey)
	underAPI := func(h http.HandlerFunc) http.HandlerFunc {
		guarded := apiKey(h)
		return func(w http.ResponseWriter, req *http.Request) {
			if strings.HasPrefix(req.URL.Path, "/v1/") {
				guarded.ServeHTTP(w, req)
				return
			}
			h(w, req)
		}
	}
	r.NotFound(underAPI(func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, &apiError{status: http.StatusNotFound, code: codeNotFound, message: "no such endpoint"})
	}))
	r.MethodNotAllowed(underAPI(func(w http.ResponseWriter, req *http.Request) {
		// chi keeps the allowed methods to itself once a custom handler is set; ask the
		// router again, so that the 405 carries the Allow header HTTP requires.
		for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
			if r.Match(chi.NewRouteContext(), m, req.URL.Path) {
				w.Header().Add("Allow", m)
			}
		}
		writeError(w, &apiError{status: http.StatusMethodNotAllowed, code: codeNotAllowed, message: "method not allowed on this endpoint"})
	}))
	r.Use(s.recoverer, middleware.GetHead)
	if s.devMode() {
		r.Use(s.devModeGuard)
	}

	// /ws stays out of any middleware that wraps the ResponseWriter: gws hijacks it.
	r.Get("/ws", s.handleWS)
	r.Get("/healthz", s.handleHealthz)
	r.Get("/readyz", s.handleReadyz)
	if h := metricsHandler(s.cfg.Gatherer); h != nil {
		r.Method(http.MethodGet, "/metrics", h)
	}

	// The API's description is public: tools fetch it before they hold a key.
	r.Get("/v1/openapi.json", s.handleOpenAPI)
	// The API is a group, not a mounted subrouter: its routes sit in the one routing tree,
	// so a request is routed once (Mount routes twice and copies the request again).
	r.Group(func(r chi.Router) {
		r.Use(s.apiObserver(), apiKey)
		r.Post("/v1/messages", s.handlePostBatch)
		r.Post("/v1/users/{user}/messages", s.handlePostUserMessage)
		r.Get("/v1/users/{user}/messages", s.handleGetUserMessages)
		r.Get("/v1/users/{user}/rooms", s.handleGetUserRooms)
		r.Delete("/v1/users/{user}/connections", s.handleDeleteConnections)
		r.Get("/v1/users/{user}/presence", s.handleGetPresence)
		r.Put("/v1/rooms/{room}/members/{user}", s.handlePutMember)
		r.Delete("/v1/rooms/{room}/members/{user}", s.handleDeleteMember)
		r.Get("/v1/rooms/{room}/members", s.handleGetMembers)
		r.Post("/v1/rooms/{room}/messages", s.handlePostRoomMessage)
		r.Get("/v1/rooms/{room}/messages", s.handleGetRoomMessages)
		r.Get("/v1/rooms/{room}/presence", s.handleGetRoomPresence)
	})
	r.Route("/admin", func(r chi.Router) {
		r.Get("/", s.serveFile("admin.html"))
		r.Group(func(r chi.Router) {
			r.Use(s.requireKey(s.cfg.AdminKey))
			r.Get("/subscriptions", s.handleAdminSubscriptions)
		})
	})
	r.Get("/", s.serveFile("index.html"))
	r.Get("/assets/*", s.handleAsset)
	return r
}

// recoverer turns a panic in a handler into a logged 500, keeping the process up.
func (s *Server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("panic in handler", "path", r.URL.Path, "panic", v)
				writeError(w, errors.New("panic"))
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// Serve serves on ln until ctx ends, then drains: readiness turns 503, the listener closes,
// every WebSocket is closed with 1012 (its client reconnects elsewhere and resumes), and
// in-flight HTTP requests finish, all within ShutdownTimeout. It returns only when every
// goroutine it started, connections' included, has ended.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := s.httpServer()
	errc := make(chan error, 1)
	// On both ways out below the HTTP server has stopped and s.ctx is cancelled before these
	// run, so the waits end.
	var bg sync.WaitGroup
	defer bg.Wait()
	var joinBy time.Time // until when connections may close on their own (zero: ShutdownTimeout)
	defer func() { s.joinClients(joinBy) }()
	bg.Go(func() { errc <- hs.Serve(ln) })
	bg.Go(func() { s.heartbeat(s.ctx) })
	select {
	case err := <-errc:
		s.closeClients(disconnectServerError)
		s.cancel()
		return err
	case <-ctx.Done():
	}
	joinBy, err := s.drain(hs, errc)
	return err
}

func (s *Server) httpServer() *http.Server {
	return &http.Server{
		Handler:           s.router,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
}

// drain stops the node in the order load balancers and clients need: readiness off (and
// DrainDelay to notice it), then the listener and the WebSockets (1012) together, then the
// in-flight requests, within ShutdownTimeout. It returns that deadline, which the
// connections' own clean-up shares.
func (s *Server) drain(hs *http.Server, errc <-chan error) (time.Time, error) {
	s.draining.Store(true)
	if s.cfg.DrainDelay > 0 {
		// Keep serving, unready, so that load balancers see /readyz fail and stop sending
		// new connections here before the listener closes.
		s.log.Info("draining: unready, waiting before closing", "delay", s.cfg.DrainDelay)
		time.Sleep(s.cfg.DrainDelay)
	}
	by := time.Now().Add(s.cfg.ShutdownTimeout)
	sctx, cancel := context.WithDeadline(context.Background(), by)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { _ = hs.Shutdown(sctx) })
	s.closeClients(disconnectDraining)
	wg.Wait()
	s.cancel()
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return by, err
	}
	return by, nil
}

// joinClients waits until by (zero: ShutdownTimeout from now) for every connection's
// goroutine to end. Connections still open then outlived their close (a peer that never
// completes it): closing their sockets ends their read loops, and their clean-up is bounded
// by its own timeouts.
func (s *Server) joinClients(by time.Time) {
	s.mu.Lock() // no connection registers (and adds to s.wg) once this waits
	s.draining.Store(true)
	s.mu.Unlock()
	if by.IsZero() {
		by = time.Now().Add(s.cfg.ShutdownTimeout)
	}
	ctx, cancel := context.WithDeadline(context.Background(), by)
	defer cancel()
	s.waitClients(ctx)
	s.eachClient(func(c *client) { c.sock.abort() })
	s.wg.Wait()
}
