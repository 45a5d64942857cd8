package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard-dev/switchboard/events"
	"github.com/switchboard-dev/switchboard/service"
	"github.com/switchboard-dev/switchboard/subscriptions"
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
}

// parseConfig reads flags; each flag's default comes from its environment variable when set,
// so a flag on the command line wins over the environment. Values are checked after every
// flag is read, so a bad value from the environment is refused like one on the command line.
func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("switchboard", flag.ContinueOnError)
	fs.SetOutput(stderr)
	settings := c.settings()
	for i := range settings {
		st := &settings[i]
		env := "SWITCHBOARD_" + strings.ToUpper(strings.ReplaceAll(st.name, "-", "_"))
		if v := getenv(env); v != "" {
			st.raw = v
		}
		fs.StringVar(&st.raw, st.name, st.raw, st.help+" (env "+env+")")
	}
	insecure := getenv("SWITCHBOARD_INSECURE_DEV")
	fs.BoolVar(&c.InsecureDev, "insecure-dev", insecure == "1" || strings.EqualFold(insecure, "true"), "allow dev mode (no token key) on a non-loopback --addr (env SWITCHBOARD_INSECURE_DEV)")
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

// setting is one flag: its name (the environment variable is derived from it), its
// default, its help text, and how its text is parsed and checked into the config.
type setting struct {
	name, raw, help string
	set             func(string) error
}

// settings lists every flag but --insecure-dev (a bool flag) in the order --help shows them.
func (c *config) settings() []setting {
	hostname, _ := os.Hostname()
	return []setting{
		{"addr", "127.0.0.1:8080", "listen address", text(&c.Addr)},
		{"redis", "", "redis://host:port/db URL of a single Redis; empty starts an embedded one", text(&c.Redis)},
		{"redis-cluster", "", "comma-separated seed addresses of a Redis Cluster", text(&c.RedisCluster)},
		{"jwt-secret", "", "HS256 secret for user tokens; with no --jwt-* key, dev auth", text(&c.JWTSecret)},
		{"jwt-public-key", "", "PEM file of the public key(s) that verify user tokens: RSA (RS256), EC P-256 (ES256) or Ed25519 (EdDSA)", text(&c.JWTPublicKey)},
		{"jwt-jwks-url", "", "URL of a JWK Set (an identity provider's jwks_uri) that verifies user tokens by their kid; refetched hourly and on an unknown kid", httpURL(&c.JWTJWKSURL)},
		{"jwt-issuer", "", "when set, a user token's iss must be this", text(&c.JWTIssuer)},
		{"jwt-audience", "", "when set, a user token's aud must include this", text(&c.JWTAudience)},
		{"jwt-user-claim", "", "the user token claim that holds the user id; empty means sub (set it for issuers whose sub is not a valid id, such as Auth0)", text(&c.JWTUserClaim)},
		{"api-key", "", "bearer key for /v1/*; empty leaves it open", text(&c.APIKey)},
		{"admin-key", "", "bearer key for /admin/*; default the API key", text(&c.AdminKey)},
		{"allowed-origins", "", "comma-separated origins allowed to open /ws; empty is same origin only", text(&c.AllowedOrigins)},
		{"node-id", sanitizeNode(fmt.Sprintf("%s-%d", hostname, os.Getpid())), "this node's name", text(&c.NodeID)},
		{"history-size", "1000", "messages kept per user stream", integer(&c.HistorySize, 1, math.MaxInt64)},
		{"room-history-size", "1000", "messages kept per room stream (room history); 0 keeps none", integer(&c.RoomHistorySize, 0, math.MaxInt64)},
		{"history-ttl", "24h", "how long an idle user stream is kept", duration(&c.HistoryTTL, time.Second, math.MaxInt64)},
		{"max-message-bytes", "65536", "largest payload, HTTP or WebSocket", integer(&c.MaxMessageBytes, 1, 16<<20)},
		{"max-token-lifetime", "24h", "longest a user token may live: exp at most this far from now and from iat; also how long a revocation is kept", duration(&c.MaxTokenLifetime, time.Minute, math.MaxInt64)},
		{"dev-hosts", "", "comma-separated Host names dev mode serves besides loopback ones, * for any", text(&c.DevHosts)},
		{"drain-delay", "0s", "on SIGTERM, how long to answer /readyz 503 before closing", duration(&c.DrainDelay, 0, time.Minute)},
		{"replay-bytes", "", "bytes of history one resuming connection may hold in memory at once, read ahead and queued; default 1048576", optional(integer(&c.ReplayBytes, 1024, 1<<30))},
		{"max-resumes-per-user", "", "resumes (since=) of one user replaying on this node at once, more are refused with 429; default 4", optional(integer(&c.MaxResumesPerUser, 1, math.MaxInt))},
		{"webhook-url", "", "backend URL that receives events; empty means no events", text(&c.WebhookURL)},
		{"webhook-secret", "", "HMAC-SHA256 key that signs event requests", text(&c.WebhookSecret)},
		{"authorize-url", "", "backend hook asked about a join or direct message the user's token does not grant; empty: refused", httpURL(&c.AuthorizeURL)},
		{"connect-url", "", "backend hook that says who a /ws request without a token is (its cookies, headers, query); empty: a token is needed", httpURL(&c.ConnectURL)},
		{"rpc-url", "", "backend hook that answers clients' rpc frames; empty: rpc is not enabled", httpURL(&c.RPCURL)},
		{"hook-timeout", "2s", "how long a hook call may take, waiting included; past it the call fails closed (unavailable)", duration(&c.HookTimeout, 10*time.Millisecond, time.Minute)},
		{"event-queue-bytes", strconv.Itoa(events.DefaultMaxBytes), "byte budget of the webhook event queue in Redis; events that do not fit are refused and counted", integer(&c.EventQueueBytes, 1<<20, math.MaxInt64)},
		{"event-user-bytes", strconv.Itoa(events.DefaultMaxUserBytes), "one user's share of the event queue; a client's events past it are refused with queue_full", integer(&c.EventUserBytes, 1, math.MaxInt64)},
		{"event-system-reserve", strconv.FormatFloat(events.DefaultSystemReserve, 'g', -1, 64), "fraction of the event queue only server events (presence, rooms) may use", fraction(&c.EventSystemReserve)},
		{"log-level", "info", "debug, info, warn or error", text(&c.LogLevel)},
		{"debug-addr", "", "address of a separate listener for /debug/pprof; empty means none", text(&c.DebugAddr)},
		{"user-send-limit", "50/s,100", "client sends (DMs and room sends) per user, over all its connections and nodes: RATE/PERIOD[,BURST] or off", limit(&c.SendLimit)},
		{"user-join-limit", "10/s,100", "client joins per user: RATE/PERIOD[,BURST] or off", limit(&c.JoinLimit)},
		{"user-event-limit", "10/s,50", "client events per user: RATE/PERIOD[,BURST] or off", limit(&c.EventLimit)},
		{"user-connect-limit", "1/s,30", "new WebSockets per user: RATE/PERIOD[,BURST] or off", limit(&c.UserConnLimit)},
		{"ip-connect-limit", "20/s,200", "new WebSockets per client IP (IPv6 per /64): RATE/PERIOD[,BURST] or off", limit(&c.IPConnLimit)},
		{"trusted-proxies", "", "comma-separated CIDRs of reverse proxies whose X-Forwarded-For names the client IP; empty: the TCP peer is the client", cidrs(&c.TrustedProxies)},
		{"max-rooms-per-user", "1000", "rooms one user may be in", integer(&c.MaxRoomsPerUser, 1, math.MaxInt)},
		{"max-room-members", "100000", "members one room may have", integer(&c.MaxRoomMembers, 1, math.MaxInt)},
		{"big-room-threshold", strconv.Itoa(subscriptions.DefaultBigRoomThreshold), "members from which a room is delivered by fan-out on read (one stored copy per message); 0 or off keeps every room per-member", offInteger(&c.BigRoomThreshold)},
	}
}

// check refuses combinations of settings and fills in the defaults that depend on others.
func (c *config) check() error {
	if c.Redis != "" && c.RedisCluster != "" {
		return errors.New("--redis and --redis-cluster are exclusive")
	}
	if c.AdminKey == "" {
		c.AdminKey = c.APIKey
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

func text(dst *string) func(string) error {
	return func(s string) error { *dst = s; return nil }
}

// httpURL checks an http or https URL with a host, empty for none.
func httpURL(dst *string) func(string) error {
	return func(s string) error {
		if s != "" {
			u, err := url.Parse(s)
			if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
				return errors.New("must be an http(s) URL")
			}
		}
		*dst = s
		return nil
	}
}

// integer parses a whole number from lo to hi into dst.
// offInteger parses a count where "off" means 0 (the feature is off).
func offInteger(dst *int) func(string) error {
	parse := integer(dst, 0, math.MaxInt32)
	return func(s string) error {
		if s == "off" {
			*dst = 0
			return nil
		}
		if err := parse(s); err != nil {
			return errors.New("must be an integer of at least 0, or off")
		}
		return nil
	}
}

func integer[T int | int64](dst *T, lo, hi int64) func(string) error {
	return func(s string) error {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < lo || n > hi {
			if hi == math.MaxInt64 || hi == math.MaxInt {
				return fmt.Errorf("must be an integer of at least %d", lo)
			}
			return fmt.Errorf("must be an integer from %d to %d", lo, hi)
		}
		*dst = T(n)
		return nil
	}
}

// duration parses a Go duration from lo to hi into dst.
func duration(dst *time.Duration, lo, hi time.Duration) func(string) error {
	return func(s string) error {
		d, err := time.ParseDuration(s)
		if err != nil || d < lo || d > hi {
			if hi == math.MaxInt64 {
				return fmt.Errorf("must be a duration of at least %v", lo)
			}
			return fmt.Errorf("must be a duration from %v to %v", lo, hi)
		}
		*dst = d
		return nil
	}
}

// fraction parses a number strictly between 0 and 1 into dst.
func fraction(dst *float64) func(string) error {
	return func(s string) error {
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || !(f > 0 && f < 1) {
			return errors.New("must be a fraction strictly between 0 and 1")
		}
		*dst = f
		return nil
	}
}

// optional leaves the zero value (the part's own default) for an empty setting.
func optional(set func(string) error) func(string) error {
	return func(s string) error {
		if s == "" {
			return nil
		}
		return set(s)
	}
}

func limit(dst *service.Limit) func(string) error {
	return func(s string) (err error) {
		*dst, err = service.ParseLimit(s)
		return err
	}
}

// cidrs checks a comma-separated list of CIDRs and keeps it as written.
func cidrs(dst *string) func(string) error {
	return func(s string) error {
		for _, p := range splitList(s) {
			if _, err := netip.ParsePrefix(p); err != nil {
				return fmt.Errorf("lists %q, which is not a CIDR such as 10.0.0.0/8", p)
			}
		}
		*dst = s
		return nil
	}
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
