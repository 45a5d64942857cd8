package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/switchboard-dev/switchboard/events"
	"github.com/switchboard-dev/switchboard/service"
	"github.com/switchboard-dev/switchboard/subscriptions"
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

	rdb, redisDesc, closeEmbedded, err := connectRedis(cfg, log)
	if err != nil {
		return err
	}
	defer closeEmbedded()
	defer rdb.Close()

	if cfg.JWTSecret == "" {
		log.Warn("DEV MODE: no --jwt-secret; anyone can connect as any user with /ws?user=ID")
	}
	if cfg.APIKey == "" {
		log.Warn("DEV MODE: no --api-key; /v1 is open to anyone who can reach this address")
	}
	if cfg.AdminKey == "" {
		log.Warn("DEV MODE: no --admin-key; /admin is open to anyone who can reach this address")
	}

	// The event queue also counts presence, so it runs without a webhook too.
	queue, err := events.New(rdb, events.Config{
		URL:    cfg.WebhookURL,
		Secret: cfg.WebhookSecret,
		Node:   cfg.NodeID,
		Logger: log,

		MaxBytes:      cfg.EventQueueBytes,
		MaxUserBytes:  cfg.EventUserBytes,
		SystemReserve: cfg.EventSystemReserve,
	})
	if err != nil {
		return err
	}
	metrics := service.NewMetrics()
	hub, err := subscriptions.New(rdb, subscriptions.Config{
		Observer: metrics,
		OnNodeGone: func(ctx context.Context, node string) {
			// A node that died without a goodbye leaves its users counted online.
			if n, err := queue.Presence().NodeGone(ctx, node); err != nil {
				log.Warn("clearing a dead node's presence failed", "gone", node, "err", err)
			} else if n > 0 {
				log.Info("users of a dead node went offline", "gone", node, "users", n)
			}
		},
		Node:        cfg.NodeID,
		HistorySize: cfg.HistorySize,
		HistoryTTL:  cfg.HistoryTTL,
		Advertise:   cfg.Addr,
		Logger:      log,
		// Resumes: 0 leaves the hub's defaults.
		ReplayBytes:       cfg.ReplayBytes,
		MaxResumesPerUser: cfg.MaxResumesPerUser,

		MaxRoomsPerUser: cfg.MaxRoomsPerUser,
		MaxRoomMembers:  cfg.MaxRoomMembers,
	})
	if err != nil {
		return err
	}
	limiter, err := service.NewLimiter(rdb, service.LimiterConfig{
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
	srv := service.New(hub, service.Config{
		JWTSecret:       []byte(cfg.JWTSecret),
		APIKey:          cfg.APIKey,
		AdminKey:        cfg.AdminKey,
		AllowedOrigins:  cfg.origins(),
		MaxMessageBytes: cfg.MaxMessageBytes,
		Assets:          web.Assets(),
		DrainDelay:      cfg.DrainDelay,
		Metrics:         metrics,
		Events:          queue,
		Logger:          log,
		// Token lifetime and dev-mode Host names (docs/security.md).
		MaxTokenLifetime: cfg.MaxTokenLifetime,
		DevHosts:         cfg.devHosts(),

		Limiter: limiter,
	})
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return err
	}
	if cfg.DebugAddr != "" {
		stopDebug, err := serveDebug(cfg.DebugAddr, log)
		if err != nil {
			return err
		}
		defer stopDebug()
	}
	log.Info("switchboard listening", "addr", "http://"+ln.Addr().String(), "node", cfg.NodeID, "redis", redisDesc)

	// The hub outlives the server: the server drains its WebSockets and in-flight requests
	// first, then the hub releases the subscriptions and finishes queued deliveries.
	hubCtx, stopHub := context.WithCancel(context.Background())
	hubDone := make(chan error, 2)
	go func() { hubDone <- hub.Run(hubCtx) }()
	go func() { hubDone <- queue.Run(hubCtx) }()
	serveErr := srv.Serve(ctx, ln)
	stopHub()
	for range 2 {
		select {
		case err := <-hubDone:
			if err != nil && serveErr == nil {
				serveErr = err
			}
		case <-time.After(10 * time.Second):
			log.Warn("hub or event queue did not stop within 10s")
		}
	}
	log.Info("switchboard stopped")
	return serveErr
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

// serveDebug serves the Go profiler on its own listener, kept apart from the public API:
// profiles show internals and cost CPU.
func serveDebug(addr string, log *slog.Logger) (func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--debug-addr: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	log.Info("profiler listening", "addr", "http://"+ln.Addr().String()+"/debug/pprof/")
	return func() { _ = srv.Close() }, nil
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
