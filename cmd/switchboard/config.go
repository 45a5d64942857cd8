package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/switchboard-dev/switchboard/service"
)

// config is everything the flags and their environment variables set.
type config struct {
	Addr         string
	Redis        string
	RedisCluster string
	// JWTSecret, JWTPublicKey (a PEM file's path) and JWTJWKSURL are the token keys; any
	// of them is token mode (tokenMode). JWTIssuer and JWTAudience, when set, must match.
	JWTSecret, JWTPublicKey, JWTJWKSURL string
	JWTIssuer, JWTAudience              string
	// JWTUserClaim names the token claim that holds the user id (default sub).
	JWTUserClaim string
	// The backend's hooks (docs/hooks.md), signed with WebhookSecret, each bounded by
	// HookTimeout. ConnectURL also leaves dev mode: the backend says who a /ws is.
	AuthorizeURL, ConnectURL, RPCURL string
	HookTimeout                      time.Duration
	APIKey                           string
	AdminKey                         string
	AllowedOrigins                   string
	NodeID                           string
	HistorySize                      int64
	HistoryTTL                       time.Duration
	IdempotencyTTL                   time.Duration
	// BigRoomThreshold is the member count from which a room is big; 0 keeps every room
	// small.
	BigRoomThreshold int
	// RoomHistorySize is how many messages each room's own stream keeps; 0 keeps none.
	RoomHistorySize int64
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

	// WaitReplicas and WaitReplicasTimeout: acknowledge a message once that many replicas
	// have it (subscriptions.Config); 0 does not wait.
	WaitReplicas        int
	WaitReplicasTimeout time.Duration
	// RedisSentinel is "<master name>@<sentinel>,..." (sentinel.go), with the sentinels' and
	// the master's passwords.
	RedisSentinel, RedisSentinelPassword, RedisPassword string

	tuning
}

// tuning is what an operator tunes for their load and network, each passed to the part that
// uses it (service.Config, subscriptions.Config, events.Config, hooks.Config); the flags'
// defaults are those parts' own.
type tuning struct {
	// WebSockets: pings, timeouts, compression (service.Config).
	PingInterval, ReadTimeout, WriteTimeout time.Duration
	ShutdownTimeout                         time.Duration
	Compression                             bool
	// Per-connection limits and queue bounds (service.Config, subscriptions.Config).
	MaxConnsPerUser                 int
	FrameRate                       float64
	FrameBurst                      int
	MaxQueueMessages, MaxQueueBytes int
	MaxPending                      int
	// Redis Pub/Sub watchdog and node registry (subscriptions.Config).
	RedisHeartbeat, RegistryInterval time.Duration
	// The webhook sender (events.Config) and the hooks' concurrency (hooks.Config).
	WebhookTimeout, WebhookRetryMax, EventMaxAge time.Duration
	HookMaxConcurrent                            int
}

// parseConfig reads flags; each flag's default comes from its environment variable when set,
// so a flag on the command line wins over the environment. Values are checked after every
// flag is read, so a bad value from the environment is refused like one on the command line.
func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	var c config
	fs, settings := c.flagSet(getenv)
	fs.SetOutput(stderr)
	fs.Usage = func() { writeUsage(fs.Output(), settings) }
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	for _, st := range settings {
		if err := st.set(st.raw); err != nil {
			return c, fmt.Errorf("--%s %v, got %q", st.name, err, st.raw)
		}
	}
	return c, c.check()
}

// flagSet registers every setting on a new flag set, each defaulting to its environment
// variable when that is set. The settings' raw texts are what the flags set.
func (c *config) flagSet(getenv func(string) string) (*flag.FlagSet, []setting) {
	fs := flag.NewFlagSet("switchboard", flag.ContinueOnError)
	settings := c.settings()
	for i := range settings {
		st := &settings[i]
		if v := getenv(envName(st.name)); v != "" {
			st.raw = v
		}
		fs.Var(settingValue{st}, st.name, st.help)
	}
	return fs, settings
}

// envName is the environment variable of a flag: SWITCHBOARD_ and its name in capitals.
func envName(flag string) string {
	return "SWITCHBOARD_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// settingValue is a setting as a flag.Value: the flag package stores the text, and
// parseConfig checks it once every flag is read.
type settingValue struct{ st *setting }

func (v settingValue) String() string {
	if v.st == nil { // the flag package's zero value, for its own defaults check
		return ""
	}
	return v.st.raw
}

func (v settingValue) Set(s string) error { v.st.raw = s; return nil }

// IsBoolFlag lets a boolean setting stand alone: --compression means --compression=true.
func (v settingValue) IsBoolFlag() bool { return v.st != nil && v.st.boolean }

// check refuses combinations of settings and fills in the defaults that depend on others.
func (c *config) check() error {
	if c.ReadTimeout != 0 && c.ReadTimeout <= c.PingInterval {
		return fmt.Errorf("--read-timeout %v must be longer than --ping-interval %v, or every quiet connection is dropped between pings", c.ReadTimeout, c.PingInterval)
	}
	if c.MaxQueueBytes < c.MaxMessageBytes {
		return fmt.Errorf("--max-queue-bytes %d is under --max-message-bytes %d: a connection could not be sent a message of the largest size", c.MaxQueueBytes, c.MaxMessageBytes)
	}
	if n := btoi(c.Redis != "") + btoi(c.RedisCluster != "") + btoi(c.RedisSentinel != ""); n > 1 {
		return errors.New("--redis, --redis-cluster and --redis-sentinel are exclusive")
	}
	if c.RedisSentinel == "" && (c.RedisSentinelPassword != "" || c.RedisPassword != "") {
		return errors.New("--redis-sentinel-password and --redis-password go with --redis-sentinel")
	}
	if c.AdminKey == "" {
		c.AdminKey = c.APIKey
	}
	if c.WaitReplicas > 0 && c.Redis == "" && c.RedisSentinel == "" && c.RedisCluster == "" {
		return errors.New("--wait-replicas needs --redis, --redis-sentinel or --redis-cluster (a Redis with replicas): the embedded Redis has none")
	}
	if !c.tokenMode() && (c.JWTIssuer != "" || c.JWTAudience != "") {
		return errors.New("--jwt-issuer and --jwt-audience check tokens: set a token key too (--jwt-secret, --jwt-public-key or --jwt-jwks-url)")
	}
	if c.devMode() && !c.InsecureDev && !loopback(c.Addr) {
		return fmt.Errorf("refusing dev mode (no --jwt-secret, --jwt-public-key, --jwt-jwks-url or --connect-url: anyone could connect as anyone) on non-loopback address %q; set a token key or a connect hook, or --insecure-dev if you really mean it", c.Addr)
	}
	return nil
}

// devMode reports whether nothing authenticates WebSockets: no token key and no connect
// hook; /ws then takes ?user=.
func (c config) devMode() bool { return !c.tokenMode() && c.ConnectURL == "" }

// tokenMode reports whether any token key is set: WebSockets then need a token, and the
// rooms and dm claims are checked.
func (c config) tokenMode() bool {
	return c.JWTSecret != "" || c.JWTPublicKey != "" || c.JWTJWKSURL != ""
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
func (c config) devHosts() []string { return splitList(c.DevHosts) }

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
