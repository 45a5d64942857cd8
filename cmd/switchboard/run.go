package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"

	"github.com/switchboard-dev/switchboard/events"
	"github.com/switchboard-dev/switchboard/hooks"
	"github.com/switchboard-dev/switchboard/service"
	"github.com/switchboard-dev/switchboard/subscriptions"
	"github.com/switchboard-dev/switchboard/tokens"
	"github.com/switchboard-dev/switchboard/web"
)

// run builds the node from its configuration and runs it until ctx ends.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	cfg, err := parseConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	n, err := build(cfg, log)
	if err != nil {
		return err
	}
	return n.run(ctx)
}

// node is one Switchboard node: its parts, built by build, each stopped by run in order.
type node struct {
	log     *slog.Logger
	rdb     redis.UniversalClient
	closeDB func() // closes rdb, then the embedded Redis if there is one
	queue   *events.Queue
	janitor *events.Janitor
	hub     *subscriptions.Hub
	srv     *service.Server
	tokens  *tokens.Verifier // nil in dev mode
	hooks   *hooks.Client    // its hooks without URLs are off
	ln      net.Listener
	debug   *http.Server // the profiler on debugLn; nil without --debug-addr
	debugLn net.Listener

	// beforeStep, for tests, is called before each step of the shutdown after the drain.
	beforeStep func(step string)
}

// Shutdown steps after the server has drained, as beforeStep names them.
const (
	stepStopParts  = "stop the hub and the event queue"
	stepCloseRedis = "close Redis"
)

// build connects Redis and builds the node's parts on it, listening on cfg.Addr (and
// cfg.DebugAddr). On an error it closes what it opened.
func build(cfg config, log *slog.Logger) (_ *node, err error) {
	// Listen first: an embedded Redis listens on a port the system picks, which could
	// otherwise be cfg.Addr's own, free a moment before (it happened to an e2e test).
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, err
	}
	rdb, redisDesc, closeEmbedded, err := connectRedis(cfg, log)
	if err != nil {
		_ = ln.Close()
		return nil, err
	}
	n := &node{log: log, rdb: rdb, ln: ln, closeDB: func() { _ = rdb.Close(); closeEmbedded() }}
	defer func() {
		if err != nil {
			n.closeListeners()
			n.closeDB()
		}
	}()
	warnDevMode(cfg, log)
	if err := n.buildParts(cfg); err != nil {
		return nil, err
	}
	if cfg.DebugAddr != "" {
		if n.debug, n.debugLn, err = newDebugServer(cfg.DebugAddr); err != nil {
			return nil, err
		}
		log.Info("profiler listening", "addr", "http://"+n.debugLn.Addr().String()+"/debug/pprof/")
	}
	log.Info("switchboard listening", "addr", "http://"+n.ln.Addr().String(), "node", cfg.NodeID, "redis", redisDesc)
	return n, nil
}

func (n *node) closeListeners() {
	for _, ln := range []net.Listener{n.ln, n.debugLn} {
		if ln != nil {
			_ = ln.Close()
		}
	}
}

func warnDevMode(cfg config, log *slog.Logger) {
	if cfg.devMode() {
		log.Warn("DEV MODE: no --jwt-secret, --jwt-public-key, --jwt-jwks-url or --connect-url; anyone can connect as any user with /ws?user=ID")
	}
	if cfg.APIKey == "" {
		log.Warn("DEV MODE: no --api-key; /v1 is open to anyone who can reach this address")
	}
	if cfg.AdminKey == "" {
		log.Warn("DEV MODE: no --admin-key; /admin is open to anyone who can reach this address")
	}
}

// buildParts builds the event queue, the hub and the server, all reporting to one metrics
// registry, with a dead node's presence cleared by the queue's janitor.
func (n *node) buildParts(cfg config) error {
	// The event queue also counts presence, so it runs without a webhook too.
	queue, err := events.New(n.rdb, events.Config{
		URL:    cfg.WebhookURL,
		Secret: cfg.WebhookSecret,
		Node:   cfg.NodeID,
		Logger: n.log,

		MaxBytes:      cfg.EventQueueBytes,
		MaxUserBytes:  cfg.EventUserBytes,
		SystemReserve: cfg.EventSystemReserve,
		MaxAge:        cfg.EventMaxAge,
		Timeout:       cfg.WebhookTimeout,
		RetryMax:      cfg.WebhookRetryMax,
	})
	if err != nil {
		return err
	}
	n.queue, n.janitor = queue, queue.Presence().Janitor()
	reg := service.NewRegistry()
	n.hub, err = subscriptions.New(n.rdb, subscriptions.Config{
		Observer:    service.NewHubMetrics(reg),
		OnNodeGone:  n.janitor.NodeGone,
		Node:        cfg.NodeID,
		HistorySize: cfg.HistorySize, HistoryTTL: cfg.HistoryTTL, IdempotencyTTL: cfg.IdempotencyTTL,
		// The hub reads 0 as its default and a negative size as none.
		RoomHistorySize: cmp.Or(cfg.RoomHistorySize, -1),
		Advertise:       cfg.Addr,
		Logger:          n.log,
		// Resumes: 0 leaves the hub's defaults.
		ReplayBytes:       cfg.ReplayBytes,
		MaxResumesPerUser: cfg.MaxResumesPerUser,
		MaxRoomsPerUser:   cfg.MaxRoomsPerUser,
		MaxRoomMembers:    cfg.MaxRoomMembers,
		MaxPending:        cfg.MaxPending,
		Heartbeat:         cfg.RedisHeartbeat,
		RegistryInterval:  cfg.RegistryInterval,
		// Replication (issue 20): 0 does not wait.
		WaitReplicas: cfg.WaitReplicas, WaitReplicasTimeout: cfg.WaitReplicasTimeout,
		// The hub reads 0 as its default and a negative threshold as off.
		BigRoomThreshold: cmp.Or(cfg.BigRoomThreshold, -1),
	})
	if err != nil {
		return err
	}
	limiter, err := service.NewLimiter(n.rdb, service.LimiterConfig{
		Sends:          cfg.SendLimit,
		Joins:          cfg.JoinLimit,
		Events:         cfg.EventLimit,
		UserConns:      cfg.UserConnLimit,
		IPConns:        cfg.IPConnLimit,
		TrustedProxies: cfg.proxies(),
	})
	if err != nil {
		return err
	}
	if n.tokens, err = newVerifier(cfg, reg, n.log); err != nil {
		return err
	}
	if n.hooks, err = hooks.New(hooks.Config{
		AuthorizeURL:  cfg.AuthorizeURL,
		ConnectURL:    cfg.ConnectURL,
		RPCURL:        cfg.RPCURL,
		Secret:        cfg.WebhookSecret,
		Timeout:       cfg.HookTimeout,
		MaxConcurrent: cfg.HookMaxConcurrent,
		Node:          cfg.NodeID,
		Logger:        n.log,
		Registerer:    reg,
	}); err != nil {
		return err
	}
	n.srv = service.New(n.hub, service.Config{
		Tokens:          n.tokens,
		Hooks:           n.hooks,
		APIKey:          cfg.APIKey,
		AdminKey:        cfg.AdminKey,
		AllowedOrigins:  cfg.origins(),
		MaxMessageBytes: cfg.MaxMessageBytes,
		Assets:          web.Assets(),
		DrainDelay:      cfg.DrainDelay,
		Registerer:      reg,
		Events:          queue,
		Logger:          n.log,
		// Dev-mode Host names (docs/security.md).
		DevHosts: cfg.devHosts(),

		Limiter: limiter,

		PingInterval:     cfg.PingInterval,
		ReadTimeout:      cfg.ReadTimeout, // 0: the service's default for PingInterval
		WriteTimeout:     cfg.WriteTimeout,
		ShutdownTimeout:  cfg.ShutdownTimeout,
		MaxConnsPerUser:  cfg.MaxConnsPerUser,
		FrameRate:        cfg.FrameRate,
		FrameBurst:       cfg.FrameBurst,
		MaxQueueMessages: cfg.MaxQueueMessages,
		MaxQueueBytes:    cfg.MaxQueueBytes,
		Compression:      cfg.Compression,
	})
	return nil
}

// newVerifier builds the token verifier of the --jwt-* flags, nil in dev mode. A JWKS is
// fetched here, so a wrong URL stops the node at start.
func newVerifier(cfg config, reg prometheus.Registerer, log *slog.Logger) (*tokens.Verifier, error) {
	if !cfg.tokenMode() {
		return nil, nil
	}
	tc := tokens.Config{
		Secret:      []byte(cfg.JWTSecret),
		JWKSURL:     cfg.JWTJWKSURL,
		Issuer:      cfg.JWTIssuer,
		Audience:    cfg.JWTAudience,
		UserClaim:   cfg.JWTUserClaim,
		MaxLifetime: cfg.MaxTokenLifetime,
		Registerer:  reg,
		Logger:      log,
	}
	if cfg.JWTPublicKey != "" {
		pem, err := os.ReadFile(cfg.JWTPublicKey)
		if err != nil {
			return nil, fmt.Errorf("--jwt-public-key: %w", err)
		}
		tc.PublicKeyPEM = pem
	}
	if u, err := url.Parse(cfg.JWTJWKSURL); err == nil && u.Scheme == "http" && !loopback(net.JoinHostPort(u.Hostname(), "0")) {
		log.Warn("--jwt-jwks-url is plain http: whoever sits on the path can serve keys that sign any token; use https", "url", cfg.JWTJWKSURL)
	}
	return tokens.New(context.Background(), tc) // its errors say which key is wrong
}

// run serves until ctx ends or a part fails, then stops the node in order: the server
// drains (readiness off, listener closed, WebSockets closed with 1012, in-flight requests
// finished); then the hub releases its subscriptions and finishes queued deliveries while
// the event queue, the janitor and the profiler stop; then Redis closes. Every goroutine it
// started has ended when it returns.
func (n *node) run(ctx context.Context) error {
	// The parts run under a context of their own: they outlive the server's drain.
	partsCtx, stopParts := context.WithCancel(context.Background())
	defer stopParts()
	parts, partsCtx := errgroup.WithContext(partsCtx)
	parts.Go(func() error { return n.hub.Run(partsCtx) })
	parts.Go(func() error { return n.queue.Run(partsCtx) })
	parts.Go(func() error { return n.janitor.Run(partsCtx, n.hub) })
	if n.tokens != nil {
		parts.Go(func() error { return n.tokens.Run(partsCtx) }) // the hourly JWKS refresh
	}
	if n.debug != nil {
		parts.Go(func() error { return serveUntil(partsCtx, n.debug, n.debugLn) })
	}
	// A part that fails (errgroup cancels partsCtx) stops the node too.
	serveCtx, stopServing := context.WithCancel(ctx)
	defer stopServing()
	defer context.AfterFunc(partsCtx, stopServing)()

	serveErr := n.srv.Serve(serveCtx, n.ln)
	n.step(stepStopParts)
	stopParts()
	slow := time.AfterFunc(10*time.Second, func() { n.log.Warn("still waiting for the hub and the event queue to stop") })
	partsErr := parts.Wait()
	slow.Stop()
	n.hooks.Close() // the server has drained: no call is left to make
	n.step(stepCloseRedis)
	n.closeDB()
	n.log.Info("switchboard stopped")
	return cmp.Or(serveErr, partsErr)
}

func (n *node) step(name string) {
	n.log.Debug("shutdown: " + name)
	if n.beforeStep != nil {
		n.beforeStep(name)
	}
}

// connectRedis builds the go-redis client the configuration asks for: a Redis Cluster, a
// single Redis, or an embedded one. Every client runs without retries (a retry would replay
// the delivery script and store a message twice) and honours context deadlines.
func connectRedis(cfg config, log *slog.Logger) (rdb redis.UniversalClient, desc string, closeEmbedded func(), err error) {
	closeEmbedded = func() {}
	if cfg.RedisCluster != "" {
		opts, err := clusterOptions(cfg.RedisCluster)
		if err != nil {
			return nil, "", nil, fmt.Errorf("--redis-cluster: %w", err)
		}
		opts.MaxRetries = -1 // redirects (MOVED, ASK) are still followed: MaxRedirects
		opts.ContextTimeoutEnabled = true
		opts.ClientName = "switchboard-" + cfg.NodeID
		opts.PoolSize = max(opts.PoolSize, 64)
		return redis.NewClusterClient(opts), "cluster " + strings.Join(opts.Addrs, ","), closeEmbedded, nil
	}
	if cfg.RedisSentinel != "" {
		opts, err := sentinelOptions(cfg)
		if err != nil {
			return nil, "", nil, fmt.Errorf("--redis-sentinel: %w", err)
		}
		opts.MaxRetries = -1
		opts.ContextTimeoutEnabled = true
		opts.ClientName = "switchboard-" + cfg.NodeID
		return redis.NewFailoverClient(opts), "sentinel " + cfg.RedisSentinel, closeEmbedded, nil
	}
	redisURL := cfg.Redis
	if redisURL == "" {
		mr := miniredis.NewMiniRedis()
		if err := mr.StartAddr("127.0.0.1:0"); err != nil {
			return nil, "", nil, fmt.Errorf("start embedded redis: %w", err)
		}
		closeEmbedded = mr.Close
		redisURL = "redis://" + mr.Addr() + "/0"
		log.Warn("no --redis given: using an embedded in-process Redis; fine for a laptop, not for load or for more than one node", "addr", mr.Addr())
	}
	opts, err := redis.ParseURL(redisURL)
	if err != nil {
		closeEmbedded()
		return nil, "", nil, fmt.Errorf("--redis: %w", err)
	}
	opts.MaxRetries = -1
	opts.ContextTimeoutEnabled = true
	opts.ClientName = "switchboard-" + cfg.NodeID
	return redis.NewClient(opts), redactURL(redisURL), closeEmbedded, nil
}

// newDebugServer listens on addr for the Go profiler, kept apart from the public API:
// profiles show internals and cost CPU.
func newDebugServer(addr string) (*http.Server, net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("--debug-addr: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}, ln, nil
}

// serveUntil serves srv on ln until ctx ends, then closes it (a profile in progress is cut).
func serveUntil(ctx context.Context, srv *http.Server, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() { _ = srv.Close() })
	defer stop()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("--debug-addr: %w", err)
	}
	return nil
}

// clusterOptions reads --redis-cluster: comma-separated seed addresses, or a URL that
// carries credentials and TLS too, redis[s]://user:pass@host:port?addr=host2:port2.
func clusterOptions(v string) (*redis.ClusterOptions, error) {
	if strings.Contains(v, "://") {
		return redis.ParseClusterURL(v)
	}
	var addrs []string
	for _, a := range strings.Split(v, ",") {
		if a = strings.TrimSpace(a); a != "" {
			addrs = append(addrs, a)
		}
	}
	if len(addrs) == 0 {
		return nil, errors.New("no seed address")
	}
	return &redis.ClusterOptions{Addrs: addrs}, nil
}

// redactURL hides a password in a Redis URL for logging.
func redactURL(u string) string {
	if i := strings.Index(u, "@"); i >= 0 {
		if j := strings.Index(u, "://"); j >= 0 && j < i {
			return u[:j+3] + "***" + u[i:]
		}
	}
	return u
}
