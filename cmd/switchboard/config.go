package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard-dev/switchboard/events"
	"github.com/switchboard-dev/switchboard/service"
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
	// ReplayBytes and MaxResumesPerUser bound resumes (subscriptions.Config); 0 means the
	// hub's defaults, 1 MiB and 4.
	ReplayBytes       int
	MaxResumesPerUser int
	// MaxTokenLifetime caps how long a user token may live (exp - now, exp - iat).
	MaxTokenLifetime time.Duration
	// DevHosts lists the Host names dev mode serves besides loopback ones.
	DevHosts string
	// Per-user and per-IP rate limits, kept in Redis, and room quotas (docs/security.md).
	SendLimit, JoinLimit, EventLimit service.Limit
	UserConnLimit, IPConnLimit       service.Limit
	TrustedProxies                   string
	MaxRoomsPerUser, MaxRoomMembers  int

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
	maxTokenLifetime := env("SWITCHBOARD_MAX_TOKEN_LIFETIME", "24h")
	fs.StringVar(&maxTokenLifetime, "max-token-lifetime", maxTokenLifetime, "longest a user token may live: exp at most this far from now and from iat; also how long a revocation is kept (env SWITCHBOARD_MAX_TOKEN_LIFETIME)")
	fs.StringVar(&c.DevHosts, "dev-hosts", env("SWITCHBOARD_DEV_HOSTS", ""), "comma-separated Host names dev mode serves besides loopback ones, * for any (env SWITCHBOARD_DEV_HOSTS)")
	fs.StringVar(&drainDelay, "drain-delay", drainDelay, "on SIGTERM, how long to answer /readyz 503 before closing (env SWITCHBOARD_DRAIN_DELAY)")
	replayBytes := env("SWITCHBOARD_REPLAY_BYTES", "")
	maxResumes := env("SWITCHBOARD_MAX_RESUMES_PER_USER", "")
	fs.StringVar(&replayBytes, "replay-bytes", replayBytes, "bytes of history one resuming connection may hold in memory at once, read ahead and queued; default 1048576 (env SWITCHBOARD_REPLAY_BYTES)")
	fs.StringVar(&maxResumes, "max-resumes-per-user", maxResumes, "resumes (since=) of one user replaying on this node at once, more are refused with 429; default 4 (env SWITCHBOARD_MAX_RESUMES_PER_USER)")
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
	limits := []struct {
		name, env, def, help string
		dst                  *service.Limit
	}{
		{"user-send-limit", "SWITCHBOARD_USER_SEND_LIMIT", "50/s,100", "client sends (DMs and room sends) per user, over all its connections and nodes", &c.SendLimit},
		{"user-join-limit", "SWITCHBOARD_USER_JOIN_LIMIT", "10/s,100", "client joins per user", &c.JoinLimit},
		{"user-event-limit", "SWITCHBOARD_USER_EVENT_LIMIT", "10/s,50", "client events per user", &c.EventLimit},
		{"user-connect-limit", "SWITCHBOARD_USER_CONNECT_LIMIT", "1/s,30", "new WebSockets per user", &c.UserConnLimit},
		{"ip-connect-limit", "SWITCHBOARD_IP_CONNECT_LIMIT", "20/s,200", "new WebSockets per client IP (IPv6 per /64)", &c.IPConnLimit},
	}
	limitValues := make([]string, len(limits))
	for i, l := range limits {
		limitValues[i] = env(l.env, l.def)
		fs.StringVar(&limitValues[i], l.name, limitValues[i], l.help+": RATE/PERIOD[,BURST] or off (env "+l.env+")")
	}
	fs.StringVar(&c.TrustedProxies, "trusted-proxies", env("SWITCHBOARD_TRUSTED_PROXIES", ""), "comma-separated CIDRs of reverse proxies whose X-Forwarded-For names the client IP; empty: the TCP peer is the client (env SWITCHBOARD_TRUSTED_PROXIES)")
	maxRooms := env("SWITCHBOARD_MAX_ROOMS_PER_USER", "1000")
	maxMembers := env("SWITCHBOARD_MAX_ROOM_MEMBERS", "100000")
	fs.StringVar(&maxRooms, "max-rooms-per-user", maxRooms, "rooms one user may be in (env SWITCHBOARD_MAX_ROOMS_PER_USER)")
	fs.StringVar(&maxMembers, "max-room-members", maxMembers, "members one room may have (env SWITCHBOARD_MAX_ROOM_MEMBERS)")
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
	if replayBytes != "" {
		if c.ReplayBytes, err = strconv.Atoi(replayBytes); err != nil || c.ReplayBytes < 1024 || c.ReplayBytes > 1<<30 {
			return c, fmt.Errorf("--replay-bytes must be an integer from 1024 to 1073741824, got %q", replayBytes)
		}
	}
	if maxResumes != "" {
		if c.MaxResumesPerUser, err = strconv.Atoi(maxResumes); err != nil || c.MaxResumesPerUser < 1 {
			return c, fmt.Errorf("--max-resumes-per-user must be a positive integer, got %q", maxResumes)
		}
	}
	if c.MaxTokenLifetime, err = time.ParseDuration(maxTokenLifetime); err != nil || c.MaxTokenLifetime < time.Minute {
		return c, fmt.Errorf("--max-token-lifetime must be a duration of at least 1m, got %q", maxTokenLifetime)
	}
	for i, l := range limits {
		if *l.dst, err = service.ParseLimit(limitValues[i]); err != nil {
			return c, fmt.Errorf("--%s: %w", l.name, err)
		}
	}
	if c.MaxRoomsPerUser, err = strconv.Atoi(maxRooms); err != nil || c.MaxRoomsPerUser < 1 {
		return c, fmt.Errorf("--max-rooms-per-user must be a positive integer, got %q", maxRooms)
	}
	if c.MaxRoomMembers, err = strconv.Atoi(maxMembers); err != nil || c.MaxRoomMembers < 1 {
		return c, fmt.Errorf("--max-room-members must be a positive integer, got %q", maxMembers)
	}
	for _, p := range c.proxies() {
		if _, err := netip.ParsePrefix(p); err != nil {
			return c, fmt.Errorf("--trusted-proxies: %q is not a CIDR such as 10.0.0.0/8", p)
		}
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

// proxies splits the --trusted-proxies list.
func (c config) proxies() []string { return splitList(c.TrustedProxies) }

// origins splits the --allowed-origins list.
func (c config) origins() []string { return splitList(c.AllowedOrigins) }

// splitList splits a comma-separated list, dropping spaces and empty items.
func splitList(list string) []string {
	var out []string
	for _, o := range strings.Split(list, ",") {
		if o = strings.TrimSpace(o); o != "" {
			out = append(out, o)
		}
	}
	return out
}

// devHosts splits the --dev-hosts list.
func (c config) devHosts() []string {
	var out []string
	for _, h := range strings.Split(c.DevHosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			out = append(out, h)
		}
	}
	return out
}
