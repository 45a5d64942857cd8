package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard-dev/switchboard/events"
)

// config is everything the flags and their environment variables set.
type config struct {
	Addr            string
	Redis           string
	RedisCluster    string
	JWTSecret       string
	APIKey          string
	AdminKey        string
	AllowedOrigins  string
	NodeID          string
	HistorySize     int64
	HistoryTTL      time.Duration
	MaxMessageBytes int
	WebhookURL      string
	WebhookSecret   string
	LogLevel        string
	InsecureDev     bool
	DebugAddr       string
	DrainDelay      time.Duration

	// EventQueueBytes, EventUserBytes and EventSystemReserve bound the webhook event queue
	// (events.Config MaxBytes, MaxUserBytes, SystemReserve).
	EventQueueBytes    int64
	EventUserBytes     int64
	EventSystemReserve float64
}

// parseConfig reads flags; each flag's default comes from its environment variable when set,
// so a flag on the command line wins over the environment.
func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("switchboard", flag.ContinueOnError)
	fs.SetOutput(stderr)
	env := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	hostname, _ := os.Hostname()
	defaultNode := sanitizeNode(fmt.Sprintf("%s-%d", hostname, os.Getpid()))

	fs.StringVar(&c.Addr, "addr", env("SWITCHBOARD_ADDR", "127.0.0.1:8080"), "listen address (env SWITCHBOARD_ADDR)")
	fs.StringVar(&c.Redis, "redis", env("SWITCHBOARD_REDIS", ""), "redis://host:port/db URL of a single Redis; empty starts an embedded one (env SWITCHBOARD_REDIS)")
	fs.StringVar(&c.RedisCluster, "redis-cluster", env("SWITCHBOARD_REDIS_CLUSTER", ""), "comma-separated seed addresses of a Redis Cluster (env SWITCHBOARD_REDIS_CLUSTER)")
	fs.StringVar(&c.JWTSecret, "jwt-secret", env("SWITCHBOARD_JWT_SECRET", ""), "HS256 secret for user tokens; empty means dev auth (env SWITCHBOARD_JWT_SECRET)")
	fs.StringVar(&c.APIKey, "api-key", env("SWITCHBOARD_API_KEY", ""), "bearer key for /v1/*; empty leaves it open (env SWITCHBOARD_API_KEY)")
	fs.StringVar(&c.AdminKey, "admin-key", env("SWITCHBOARD_ADMIN_KEY", ""), "bearer key for /admin/*; default the API key (env SWITCHBOARD_ADMIN_KEY)")
	fs.StringVar(&c.AllowedOrigins, "allowed-origins", env("SWITCHBOARD_ALLOWED_ORIGINS", ""), "comma-separated origins allowed to open /ws; empty is same origin only (env SWITCHBOARD_ALLOWED_ORIGINS)")
	fs.StringVar(&c.NodeID, "node-id", env("SWITCHBOARD_NODE_ID", defaultNode), "this node's name (env SWITCHBOARD_NODE_ID)")
	historySize := env("SWITCHBOARD_HISTORY_SIZE", "1000")
	historyTTL := env("SWITCHBOARD_HISTORY_TTL", "24h")
	maxBytes := env("SWITCHBOARD_MAX_MESSAGE_BYTES", "65536")
	drainDelay := env("SWITCHBOARD_DRAIN_DELAY", "0s")
	fs.StringVar(&historySize, "history-size", historySize, "messages kept per user stream (env SWITCHBOARD_HISTORY_SIZE)")
	fs.StringVar(&historyTTL, "history-ttl", historyTTL, "how long an idle user stream is kept (env SWITCHBOARD_HISTORY_TTL)")
	fs.StringVar(&maxBytes, "max-message-bytes", maxBytes, "largest payload, HTTP or WebSocket (env SWITCHBOARD_MAX_MESSAGE_BYTES)")
	fs.StringVar(&drainDelay, "drain-delay", drainDelay, "on SIGTERM, how long to answer /readyz 503 before closing (env SWITCHBOARD_DRAIN_DELAY)")
	fs.StringVar(&c.WebhookURL, "webhook-url", env("SWITCHBOARD_WEBHOOK_URL", ""), "backend URL that receives events; empty means no events (env SWITCHBOARD_WEBHOOK_URL)")
	fs.StringVar(&c.WebhookSecret, "webhook-secret", env("SWITCHBOARD_WEBHOOK_SECRET", ""), "HMAC-SHA256 key that signs event requests (env SWITCHBOARD_WEBHOOK_SECRET)")
	eventQueueBytes := env("SWITCHBOARD_EVENT_QUEUE_BYTES", strconv.Itoa(events.DefaultMaxBytes))
	eventUserBytes := env("SWITCHBOARD_EVENT_USER_BYTES", strconv.Itoa(events.DefaultMaxUserBytes))
	eventReserve := env("SWITCHBOARD_EVENT_SYSTEM_RESERVE", strconv.FormatFloat(events.DefaultSystemReserve, 'g', -1, 64))
	fs.StringVar(&eventQueueBytes, "event-queue-bytes", eventQueueBytes, "byte budget of the webhook event queue in Redis; events that do not fit are refused and counted (env SWITCHBOARD_EVENT_QUEUE_BYTES)")
	fs.StringVar(&eventUserBytes, "event-user-bytes", eventUserBytes, "one user's share of the event queue; a client's events past it are refused with queue_full (env SWITCHBOARD_EVENT_USER_BYTES)")
	fs.StringVar(&eventReserve, "event-system-reserve", eventReserve, "fraction of the event queue only server events (presence, rooms) may use (env SWITCHBOARD_EVENT_SYSTEM_RESERVE)")
	fs.StringVar(&c.LogLevel, "log-level", env("SWITCHBOARD_LOG_LEVEL", "info"), "debug, info, warn or error (env SWITCHBOARD_LOG_LEVEL)")
	fs.StringVar(&c.DebugAddr, "debug-addr", env("SWITCHBOARD_DEBUG_ADDR", ""), "address of a separate listener for /debug/pprof; empty means none (env SWITCHBOARD_DEBUG_ADDR)")
	insecure := env("SWITCHBOARD_INSECURE_DEV", "")
	fs.BoolVar(&c.InsecureDev, "insecure-dev", insecure == "1" || strings.EqualFold(insecure, "true"), "allow dev mode (no --jwt-secret) on a non-loopback --addr (env SWITCHBOARD_INSECURE_DEV)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	var err error
	if c.HistorySize, err = strconv.ParseInt(historySize, 10, 64); err != nil || c.HistorySize < 1 {
		return c, fmt.Errorf("--history-size must be a positive integer, got %q", historySize)
	}
	if c.HistoryTTL, err = time.ParseDuration(historyTTL); err != nil || c.HistoryTTL < time.Second {
		return c, fmt.Errorf("--history-ttl must be a duration of at least 1s, got %q", historyTTL)
	}
	if c.MaxMessageBytes, err = strconv.Atoi(maxBytes); err != nil || c.MaxMessageBytes < 1 || c.MaxMessageBytes > 16<<20 {
		return c, fmt.Errorf("--max-message-bytes must be an integer from 1 to 16777216, got %q", maxBytes)
	}
	if c.DrainDelay, err = time.ParseDuration(drainDelay); err != nil || c.DrainDelay < 0 || c.DrainDelay > time.Minute {
		return c, fmt.Errorf("--drain-delay must be a duration from 0s to 1m, got %q", drainDelay)
	}
	if c.EventQueueBytes, err = strconv.ParseInt(eventQueueBytes, 10, 64); err != nil || c.EventQueueBytes < 1<<20 {
		return c, fmt.Errorf("--event-queue-bytes must be an integer of at least 1048576, got %q", eventQueueBytes)
	}
	if c.EventUserBytes, err = strconv.ParseInt(eventUserBytes, 10, 64); err != nil || c.EventUserBytes < 1 {
		return c, fmt.Errorf("--event-user-bytes must be a positive integer, got %q", eventUserBytes)
	}
	if c.EventSystemReserve, err = strconv.ParseFloat(eventReserve, 64); err != nil || !(c.EventSystemReserve > 0 && c.EventSystemReserve < 1) {
		return c, fmt.Errorf("--event-system-reserve must be a fraction strictly between 0 and 1, got %q", eventReserve)
	}
	if c.Redis != "" && c.RedisCluster != "" {
		return c, errors.New("--redis and --redis-cluster are exclusive")
	}
	if c.AdminKey == "" {
		c.AdminKey = c.APIKey
	}
	if c.JWTSecret == "" && !c.InsecureDev && !loopback(c.Addr) {
		return c, fmt.Errorf("refusing dev mode (no --jwt-secret: anyone could connect as anyone) on non-loopback address %q; set --jwt-secret, or --insecure-dev if you really mean it", c.Addr)
	}
	return c, nil
}

// loopback reports whether a listen address only accepts connections from this machine.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// sanitizeNode maps a hostname-pid default onto the id alphabet.
func sanitizeNode(s string) string {
	b := []byte(s)
	for i, ch := range b {
		ok := ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || strings.IndexByte("._@+-", ch) >= 0
		if !ok {
			b[i] = '-'
		}
	}
	if len(b) > 128 {
		b = b[:128]
	}
	return string(b)
}

// origins splits the --allowed-origins list.
func (c config) origins() []string {
	var out []string
	for _, o := range strings.Split(c.AllowedOrigins, ",") {
		if o = strings.TrimSpace(o); o != "" {
			out = append(out, o)
		}
	}
	return out
}
