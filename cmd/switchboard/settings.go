package main

import (
	"fmt"
	"math"
	"os"
	"strconv"
	"time"

	"github.com/switchboard-dev/switchboard/events"
	"github.com/switchboard-dev/switchboard/hooks"
	"github.com/switchboard-dev/switchboard/service"
	"github.com/switchboard-dev/switchboard/subscriptions"
)

// setting is one flag: its name (the environment variable is derived from it), its
// default, its help text, and how its text is parsed and checked into the config. group
// is its heading in --help and docs/configuration.md; boolean flags may stand alone
// (--compression); docDefault, when set, is what the docs show as the default instead of
// raw (which depends on the machine).
type setting struct {
	name, raw, help string
	set             func(string) error
	group           string
	boolean         bool
	docDefault      string
}

// The groups of settings, in the order --help and the docs show them.
var settingGroups = []string{"Network", "Redis", "Security", "Limits", "Delivery", "Webhooks & hooks", "Observability"}

// in puts settings in a group.
func in(group string, settings ...setting) []setting {
	for i := range settings {
		settings[i].group = group
	}
	return settings
}

func opt(name, raw, help string, set func(string) error) setting {
	return setting{name: name, raw: raw, help: help, set: set}
}

func flagBool(name, help string, dst *bool) setting {
	return setting{name: name, raw: "false", help: help, set: boolean(dst), boolean: true}
}

func itoa[T int | int64](n T) string { return strconv.FormatInt(int64(n), 10) }

// settings lists every flag, grouped, in the order --help shows them.
func (c *config) settings() []setting {
	hostname, _ := os.Hostname()
	nodeID := opt("node-id", sanitizeNode(fmt.Sprintf("%s-%d", hostname, os.Getpid())), "this node's name in admin views, logs and messages", text(&c.NodeID))
	nodeID.docDefault = "hostname-pid"
	var all []setting
	all = append(all, in("Network",
		opt("addr", "127.0.0.1:8080", "listen address", text(&c.Addr)),
		nodeID,
		opt("ping-interval", service.DefaultPingInterval.String(), "how often the server pings each WebSocket; keep it under the load balancer's idle timeout", duration(&c.PingInterval, time.Second, 10*time.Minute)),
		opt("read-timeout", "", "a WebSocket that sends nothing, not even a pong, for this long is dropped; empty: 2 × --ping-interval + 5s", optional(duration(&c.ReadTimeout, time.Second, time.Hour))),
		opt("write-timeout", service.DefaultWriteTimeout.String(), "how long one write to a WebSocket may block before the connection is dropped", duration(&c.WriteTimeout, 100*time.Millisecond, 10*time.Minute)),
		opt("drain-delay", "0s", "on SIGTERM, how long to answer /readyz 503 before closing, for load balancers that poll readiness", duration(&c.DrainDelay, 0, time.Minute)),
		opt("shutdown-timeout", service.DefaultShutdownTimeout.String(), "on SIGTERM, after --drain-delay, how long closing the WebSockets (1012) and finishing in-flight HTTP requests may take", duration(&c.ShutdownTimeout, 100*time.Millisecond, 10*time.Minute)),
		flagBool("compression", "offer permessage-deflate on /ws: clients that ask for it get messages of 512 bytes and more compressed, for CPU and memory (docs/deployment.md)", &c.Compression),
	)...)
	all = append(all, in("Redis",
		opt("redis", "", "redis://host:port/db URL of a single Redis; empty starts an embedded one (a laptop, not load)", text(&c.Redis)),
		opt("redis-cluster", "", "comma-separated seed addresses of a Redis Cluster (sharded Pub/Sub), or rediss://user:pass@host1:6379?addr=host2:6379 with credentials and TLS", text(&c.RedisCluster)),
		opt("redis-sentinel", "", "a master watched by Redis Sentinel: <master name>@<host:port>,<host:port>,... of the sentinels", text(&c.RedisSentinel)),
		opt("redis-sentinel-password", "", "password of the sentinels (their requirepass), with --redis-sentinel", text(&c.RedisSentinelPassword)),
		opt("redis-password", "", "password of the master and replicas, with --redis-sentinel (--redis and --redis-cluster take it in their URL)", text(&c.RedisPassword)),
		opt("wait-replicas", "0", "acknowledge a message only once this many Redis replicas have it (WAIT, one per pipeline); 0 does not wait", integer(&c.WaitReplicas, 0, 64)),
		opt("wait-replicas-timeout", "1s", "how long a delivery pipeline waits for --wait-replicas; past it the answer says \"replicated\":false", duration(&c.WaitReplicasTimeout, 10*time.Millisecond, 2*time.Second)),
		opt("redis-heartbeat", subscriptions.DefaultHeartbeat.String(), "how often the node pings itself through its Pub/Sub connection; one quiet for three heartbeats is rebuilt and its users caught up", duration(&c.RedisHeartbeat, 100*time.Millisecond, time.Minute)),
		opt("registry-interval", subscriptions.DefaultRegistryInterval.String(), "how often the node announces itself in Redis; a node silent for three intervals counts as gone and its presence is cleared", duration(&c.RegistryInterval, 500*time.Millisecond, time.Minute)),
	)...)
	all = append(all, in("Security", c.securitySettings()...)...)
	all = append(all, in("Limits", c.limitSettings()...)...)
	all = append(all, in("Delivery", c.deliverySettings()...)...)
	all = append(all, in("Webhooks & hooks", c.hookSettings()...)...)
	all = append(all, in("Observability",
		opt("log-level", "info", "debug, info, warn or error", text(&c.LogLevel)),
		opt("debug-addr", "", "address of a separate listener for /debug/pprof (keep it on loopback); empty means none", text(&c.DebugAddr)),
	)...)
	return all
}

func (c *config) securitySettings() []setting {
	return []setting{
		opt("jwt-secret", "", "HS256 secret for user tokens; with no token key and no --connect-url, dev auth (/ws?user=ID)", text(&c.JWTSecret)),
		opt("jwt-public-key", "", "PEM file of the public key(s) that verify user tokens: RSA (RS256), EC P-256 (ES256) or Ed25519 (EdDSA)", text(&c.JWTPublicKey)),
		opt("jwt-jwks-url", "", "URL of a JWK Set (an identity provider's jwks_uri) that verifies user tokens by their kid; refetched hourly and on an unknown kid", httpURL(&c.JWTJWKSURL)),
		opt("jwt-issuer", "", "when set, a user token's iss must be this", text(&c.JWTIssuer)),
		opt("jwt-audience", "", "when set, a user token's aud must include this", text(&c.JWTAudience)),
		opt("jwt-user-claim", "", "the user token claim that holds the user id; empty means sub (set it for issuers whose sub is not a valid id, such as Auth0)", text(&c.JWTUserClaim)),
		opt("max-token-lifetime", "24h", "longest a user token may live: exp at most this far from now and from iat; also how long a revocation is kept", duration(&c.MaxTokenLifetime, time.Minute, math.MaxInt64)),
		opt("api-key", "", "bearer key for /v1/*; empty leaves it open", text(&c.APIKey)),
		opt("admin-key", "", "bearer key for /admin/*; empty: the API key", text(&c.AdminKey)),
		opt("allowed-origins", "", "comma-separated origins allowed to open /ws; empty is same origin only", text(&c.AllowedOrigins)),
		opt("trusted-proxies", "", "comma-separated CIDRs of reverse proxies whose X-Forwarded-For names the client IP; empty: the TCP peer is the client", cidrs(&c.TrustedProxies)),
		opt("dev-hosts", "", "comma-separated Host names dev mode serves besides loopback ones, * for any", text(&c.DevHosts)),
		flagBool("insecure-dev", "allow dev mode (no token key, no connect hook) on a non-loopback --addr", &c.InsecureDev),
	}
}

func (c *config) limitSettings() []setting {
	return []setting{
		opt("max-message-bytes", itoa(service.DefaultMaxMessageBytes), "largest payload, HTTP or WebSocket", integer(&c.MaxMessageBytes, 1, 16<<20)),
		opt("max-conns-per-user", itoa(service.DefaultMaxConnsPerUser), "WebSockets one user may hold open on this node; more are refused with 429", integer(&c.MaxConnsPerUser, 1, math.MaxInt32)),
		opt("frame-rate", itoa(service.DefaultFrameRate), "frames per second one WebSocket may send, control frames included; a frame over it gets rate_limited", positive(&c.FrameRate, 1e6)),
		opt("frame-burst", itoa(service.DefaultFrameBurst), "frames one WebSocket may send at once over --frame-rate; a connection refused this many more within 10 s is closed with 1008", integer(&c.FrameBurst, 1, 1_000_000)),
		opt("user-send-limit", "50/s,100", "client sends (DMs and room sends) per user, over all its connections and nodes: RATE/PERIOD[,BURST] or off", limit(&c.SendLimit)),
		opt("user-join-limit", "10/s,100", "client joins per user: RATE/PERIOD[,BURST] or off", limit(&c.JoinLimit)),
		opt("user-event-limit", "10/s,50", "client events per user: RATE/PERIOD[,BURST] or off", limit(&c.EventLimit)),
		opt("user-connect-limit", "1/s,30", "new WebSockets per user, over all nodes; more get 429: RATE/PERIOD[,BURST] or off", limit(&c.UserConnLimit)),
		opt("ip-connect-limit", "20/s,200", "new WebSockets per client IP (IPv6 per /64): RATE/PERIOD[,BURST] or off", limit(&c.IPConnLimit)),
		opt("max-rooms-per-user", "1000", "rooms one user may be in; more joins get quota_exceeded", integer(&c.MaxRoomsPerUser, 1, math.MaxInt)),
		opt("max-room-members", "100000", "members one room may have", integer(&c.MaxRoomMembers, 1, math.MaxInt)),
		opt("max-resumes-per-user", "", "resumes (since=) of one user replaying on this node at once, more are refused with 429; empty: 4", optional(integer(&c.MaxResumesPerUser, 1, math.MaxInt))),
	}
}

func (c *config) deliverySettings() []setting {
	return []setting{
		opt("history-size", "1000", "messages kept per user stream", integer(&c.HistorySize, 1, math.MaxInt64)),
		opt("history-ttl", "24h", "how long an idle user stream (and room stream) is kept", duration(&c.HistoryTTL, time.Second, math.MaxInt64)),
		opt("idempotency-ttl", "24h", "how long a send's Idempotency-Key is remembered at least: a retry within it is answered with the first answer and delivers nothing; each keyed send keeps a record in Redis, a direct message's about 140 bytes for one to two times this long, a room send's about 190 bytes for this long", duration(&c.IdempotencyTTL, time.Minute, math.MaxInt64)),
		opt("room-history-size", "1000", "messages kept per room stream (room history); 0 keeps none", integer(&c.RoomHistorySize, 0, math.MaxInt64)),
		opt("big-room-threshold", itoa(subscriptions.DefaultBigRoomThreshold), "members from which a room is delivered by fan-out on read (one stored copy per message); 0 or off keeps every room per-member", offInteger(&c.BigRoomThreshold)),
		opt("max-queue-messages", itoa(service.DefaultMaxQueueMessages), "messages one WebSocket's outgoing queue holds; a client further behind is closed with 1013 (slow consumer) and resumes", integer(&c.MaxQueueMessages, 1, math.MaxInt32)),
		opt("max-queue-bytes", itoa(service.DefaultMaxQueueBytes), "bytes one WebSocket's outgoing queue holds, at least --max-message-bytes; past it, as --max-queue-messages", integer(&c.MaxQueueBytes, 64<<10, math.MaxInt32)),
		opt("max-pending", itoa(subscriptions.DefaultMaxPending), "live messages buffered for one connection while it catches up from its stream; past it they are read back from the stream instead (a replay) or the connection is closed as a slow consumer (1013)", integer(&c.MaxPending, 16, math.MaxInt32)),
		opt("replay-bytes", "", "bytes of history one resuming connection may hold in memory at once, read ahead and queued; empty: 1048576", optional(integer(&c.ReplayBytes, 1024, 1<<30))),
	}
}

func (c *config) hookSettings() []setting {
	return []setting{
		opt("webhook-url", "", "backend URL that receives events; empty means no events", httpURL(&c.WebhookURL)),
		opt("webhook-secret", "", "HMAC-SHA256 key that signs event and hook requests; empty sends them unsigned", text(&c.WebhookSecret)),
		opt("webhook-timeout", events.DefaultTimeout.String(), "how long one webhook request may take, answer included; longer is a failure, retried", duration(&c.WebhookTimeout, 100*time.Millisecond, 10*time.Minute)),
		opt("webhook-retry-max", events.DefaultRetryMax.String(), "longest wait between retries of a failing webhook, so one that comes back is used again within about this", duration(&c.WebhookRetryMax, time.Second, time.Hour)),
		opt("event-max-age", "24h", "how long an undelivered event is retried before it is dropped and counted", duration(&c.EventMaxAge, time.Minute, 30*24*time.Hour)),
		opt("event-queue-bytes", itoa(events.DefaultMaxBytes), "byte budget of the webhook event queue in Redis; events that do not fit are refused and counted", integer(&c.EventQueueBytes, 1<<20, math.MaxInt64)),
		opt("event-user-bytes", itoa(events.DefaultMaxUserBytes), "one user's share of the event queue; a client's events past it are refused with queue_full", integer(&c.EventUserBytes, 1, math.MaxInt64)),
		opt("event-system-reserve", strconv.FormatFloat(events.DefaultSystemReserve, 'g', -1, 64), "fraction of the event queue only server events (presence, rooms) may use", fraction(&c.EventSystemReserve)),
		opt("authorize-url", "", "backend hook asked about a join or direct message the user's token does not grant; empty: refused", httpURL(&c.AuthorizeURL)),
		opt("connect-url", "", "backend hook that says who a /ws request without a token is (its cookies, headers, query); empty: a token is needed", httpURL(&c.ConnectURL)),
		opt("rpc-url", "", "backend hook that answers clients' rpc frames; empty: rpc is not enabled", httpURL(&c.RPCURL)),
		opt("hook-timeout", hooks.DefaultTimeout.String(), "how long a hook call may take, waiting included; past it the call fails closed (unavailable)", duration(&c.HookTimeout, 10*time.Millisecond, time.Minute)),
		opt("hook-max-concurrent", itoa(hooks.DefaultMaxConcurrent), "calls of each hook in flight on this node; a call that gets no slot within --hook-timeout fails closed", integer(&c.HookMaxConcurrent, 1, 65536)),
	}
}
