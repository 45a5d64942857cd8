package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-dev/switchboard/service"
	"github.com/switchboard-dev/switchboard/subscriptions"
	"github.com/switchboard-dev/switchboard/tokens"
)

// fakeEnv returns a getenv for the given variables.
func fakeEnv(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

// documentedDefaults is the configuration docs/configuration.md gives with no
// flags and no environment. NodeID depends on the machine and is checked on its own.
var documentedDefaults = config{
	Addr:            "127.0.0.1:8080",
	HookTimeout:     2 * time.Second,
	HistorySize:     1000,
	HistoryTTL:      24 * time.Hour,
	IdempotencyTTL:  24 * time.Hour,
	MaxMessageBytes: 65536,
	LogLevel:        "info",
	// Room history (docs/protocol.md, "Room history").
	RoomHistorySize: 1000,
	// Replication: no wait (docs/redis-cluster.md).
	WaitReplicasTimeout: time.Second,
	// Big rooms (docs/design.md, "Big rooms: fan-out on read").
	BigRoomThreshold: 500,
	// A day: a token's lifetime cap and how long a revocation is kept (docs/security.md).
	MaxTokenLifetime: 24 * time.Hour,

	SendLimit:       service.Limit{Rate: 50, Per: time.Second, Burst: 100},
	JoinLimit:       service.Limit{Rate: 10, Per: time.Second, Burst: 100},
	EventLimit:      service.Limit{Rate: 10, Per: time.Second, Burst: 50},
	UserConnLimit:   service.Limit{Rate: 1, Per: time.Second, Burst: 30},
	IPConnLimit:     service.Limit{Rate: 20, Per: time.Second, Burst: 200},
	MaxRoomsPerUser: 1000,
	MaxRoomMembers:  100000,

	EventQueueBytes:    256 << 20,
	EventUserBytes:     1 << 20,
	EventSystemReserve: 0.25,

	tuning: defaultTuning,
}

// defaultTuning is what docs/configuration.md gives as the tuning flags' defaults.
var defaultTuning = tuning{
	PingInterval: 20 * time.Second, WriteTimeout: 10 * time.Second, ShutdownTimeout: 5 * time.Second,
	MaxConnsPerUser: 32, FrameRate: 50, FrameBurst: 100,
	MaxQueueMessages: 4096, MaxQueueBytes: 16 << 20, MaxPending: 4096,
	RedisHeartbeat: time.Second, RegistryInterval: 2 * time.Second,
	WebhookTimeout: 10 * time.Second, WebhookRetryMax: 30 * time.Second, EventMaxAge: 24 * time.Hour,
	HookMaxConcurrent: 256,
}

// withDefaultLimits gives c the default rate limits and room quotas.
func withDefaultLimits(c config) config {
	d := documentedDefaults
	c.SendLimit, c.JoinLimit, c.EventLimit = d.SendLimit, d.JoinLimit, d.EventLimit
	c.UserConnLimit, c.IPConnLimit = d.UserConnLimit, d.IPConnLimit
	c.MaxRoomsPerUser, c.MaxRoomMembers = d.MaxRoomsPerUser, d.MaxRoomMembers
	c.tuning = d.tuning
	return c
}

func TestParseConfig(t *testing.T) {
	with := func(f func(*config)) config {
		c := documentedDefaults
		f(&c)
		return c
	}
	cases := []struct {
		name   string
		args   []string
		getenv func(string) string
		want   config
	}{
		{"nothing set gives the documented defaults", nil, fakeEnv(), documentedDefaults},
		{"flags set every field", []string{
			"--addr", "0.0.0.0:9000",
			"--redis", "redis://r:6379/2",
			"--jwt-secret", "jwt",
			"--jwt-public-key", "/etc/switchboard/idp.pem",
			"--jwt-jwks-url", "https://id.example/.well-known/jwks.json",
			"--jwt-issuer", "https://id.example/",
			"--jwt-audience", "switchboard",
			"--api-key", "api",
			"--admin-key", "admin",
			"--allowed-origins", "https://a.example,https://b.example",
			"--node-id", "n1",
			"--history-size", "50",
			"--room-history-size", "0",
			"--history-ttl", "90m",
			"--max-message-bytes", "4096",
			"--webhook-url", "https://backend.example/hook",
			"--webhook-secret", "hook",
			"--log-level", "debug",
			"--max-token-lifetime", "1h",
			"--dev-hosts", "switchboard,app.test",
			"--event-queue-bytes", "67108864",
			"--event-user-bytes", "65536",
			"--event-system-reserve", "0.5",
			"--authorize-url", "https://backend.example/authorize",
			"--connect-url", "https://backend.example/connect",
			"--rpc-url", "http://127.0.0.1:9090/rpc",
			"--hook-timeout", "750ms",
			"--wait-replicas", "1",
			"--wait-replicas-timeout", "250ms",
			"--big-room-threshold", "off",
			"--idempotency-ttl", "2h",
		}, fakeEnv(), withDefaultLimits(config{
			IdempotencyTTL: 2 * time.Hour,
			WaitReplicas:   1, WaitReplicasTimeout: 250 * time.Millisecond,
			AuthorizeURL: "https://backend.example/authorize", ConnectURL: "https://backend.example/connect",
			RPCURL: "http://127.0.0.1:9090/rpc", HookTimeout: 750 * time.Millisecond,
			Addr: "0.0.0.0:9000", Redis: "redis://r:6379/2", JWTSecret: "jwt", APIKey: "api", AdminKey: "admin",
			JWTPublicKey: "/etc/switchboard/idp.pem", JWTJWKSURL: "https://id.example/.well-known/jwks.json",
			JWTIssuer: "https://id.example/", JWTAudience: "switchboard",
			AllowedOrigins: "https://a.example,https://b.example", NodeID: "n1", HistorySize: 50, RoomHistorySize: 0,
			HistoryTTL: 90 * time.Minute, MaxMessageBytes: 4096, WebhookURL: "https://backend.example/hook",
			WebhookSecret: "hook", LogLevel: "debug", MaxTokenLifetime: time.Hour, DevHosts: "switchboard,app.test",
			EventQueueBytes: 64 << 20, EventUserBytes: 64 << 10, EventSystemReserve: 0.5,
		})},
		{"environment variables set every field", nil, fakeEnv(
			"SWITCHBOARD_ADDR", "0.0.0.0:9000",
			"SWITCHBOARD_REDIS_CLUSTER", "r1:7000,r2:7000",
			"SWITCHBOARD_JWT_SECRET", "jwt",
			"SWITCHBOARD_JWT_PUBLIC_KEY", "/keys/idp.pem",
			"SWITCHBOARD_JWT_JWKS_URL", "https://id.example/jwks",
			"SWITCHBOARD_JWT_ISSUER", "https://id.example/",
			"SWITCHBOARD_JWT_AUDIENCE", "switchboard",
			"SWITCHBOARD_API_KEY", "api",
			"SWITCHBOARD_ADMIN_KEY", "admin",
			"SWITCHBOARD_ALLOWED_ORIGINS", "https://a.example",
			"SWITCHBOARD_NODE_ID", "n1",
			"SWITCHBOARD_HISTORY_SIZE", "50",
			"SWITCHBOARD_ROOM_HISTORY_SIZE", "20",
			"SWITCHBOARD_HISTORY_TTL", "1h",
			"SWITCHBOARD_MAX_MESSAGE_BYTES", "4096",
			"SWITCHBOARD_WEBHOOK_URL", "https://backend.example/hook",
			"SWITCHBOARD_WEBHOOK_SECRET", "hook",
			"SWITCHBOARD_LOG_LEVEL", "warn",
			"SWITCHBOARD_MAX_TOKEN_LIFETIME", "15m",
			"SWITCHBOARD_DEV_HOSTS", "switchboard",
			"SWITCHBOARD_EVENT_QUEUE_BYTES", "67108864",
			"SWITCHBOARD_EVENT_USER_BYTES", "65536",
			"SWITCHBOARD_EVENT_SYSTEM_RESERVE", "0.5",
			"SWITCHBOARD_AUTHORIZE_URL", "https://backend.example/authorize",
			"SWITCHBOARD_CONNECT_URL", "https://backend.example/connect",
			"SWITCHBOARD_RPC_URL", "https://backend.example/rpc",
			"SWITCHBOARD_HOOK_TIMEOUT", "5s",
			"SWITCHBOARD_WAIT_REPLICAS_TIMEOUT", "2s",
			"SWITCHBOARD_BIG_ROOM_THRESHOLD", "2000",
			"SWITCHBOARD_IDEMPOTENCY_TTL", "30m",
		), withDefaultLimits(config{
			IdempotencyTTL:      30 * time.Minute,
			WaitReplicasTimeout: 2 * time.Second,
			AuthorizeURL:        "https://backend.example/authorize", ConnectURL: "https://backend.example/connect",
			RPCURL: "https://backend.example/rpc", HookTimeout: 5 * time.Second,
			Addr: "0.0.0.0:9000", RedisCluster: "r1:7000,r2:7000", JWTSecret: "jwt", APIKey: "api", AdminKey: "admin",
			JWTPublicKey: "/keys/idp.pem", JWTJWKSURL: "https://id.example/jwks",
			JWTIssuer: "https://id.example/", JWTAudience: "switchboard",
			AllowedOrigins: "https://a.example", NodeID: "n1", HistorySize: 50, RoomHistorySize: 20,
			HistoryTTL: time.Hour, MaxMessageBytes: 4096, WebhookURL: "https://backend.example/hook",
			WebhookSecret: "hook", LogLevel: "warn", MaxTokenLifetime: 15 * time.Minute, DevHosts: "switchboard",
			EventQueueBytes: 64 << 20, EventUserBytes: 64 << 10, EventSystemReserve: 0.5,
			BigRoomThreshold: 2000,
		})},
		{"the redis URL comes from the environment", nil, fakeEnv("SWITCHBOARD_REDIS", "redis://r:6379/0"),
			with(func(c *config) { c.Redis = "redis://r:6379/0" })},
		{"a flag wins over its environment variable", []string{"--addr", "127.0.0.1:1", "--history-size", "7", "--api-key", "flag"},
			fakeEnv("SWITCHBOARD_ADDR", ":2", "SWITCHBOARD_HISTORY_SIZE", "8", "SWITCHBOARD_API_KEY", "env"),
			with(func(c *config) { c.Addr, c.HistorySize, c.APIKey, c.AdminKey = "127.0.0.1:1", 7, "flag", "flag" })},
		{"flags take the --name=value form", []string{"--max-message-bytes=100", "-history-ttl=2s"}, fakeEnv(),
			with(func(c *config) { c.MaxMessageBytes, c.HistoryTTL = 100, 2*time.Second })},
		{"the admin key defaults to the API key", []string{"--api-key", "k"}, fakeEnv(),
			with(func(c *config) { c.APIKey, c.AdminKey = "k", "k" })},
		{"the admin key defaults to the API key from the environment", nil, fakeEnv("SWITCHBOARD_API_KEY", "k"),
			with(func(c *config) { c.APIKey, c.AdminKey = "k", "k" })},
		{"an admin key of its own is kept", []string{"--api-key", "k", "--admin-key", "a"}, fakeEnv(),
			with(func(c *config) { c.APIKey, c.AdminKey = "k", "a" })},
		{"an admin key from the environment is kept beside an API key flag", []string{"--api-key", "k"}, fakeEnv("SWITCHBOARD_ADMIN_KEY", "a"),
			with(func(c *config) { c.APIKey, c.AdminKey = "k", "a" })},
		{"an admin key without an API key guards only admin", []string{"--admin-key", "a"}, fakeEnv(),
			with(func(c *config) { c.AdminKey = "a" })},
		{"the smallest limits are accepted", []string{"--history-size", "1", "--history-ttl", "1s", "--max-message-bytes", "1"}, fakeEnv(),
			with(func(c *config) { c.HistorySize, c.HistoryTTL, c.MaxMessageBytes = 1, time.Second, 1 })},
		{"the largest message size is accepted", []string{"--max-message-bytes", "16777216"}, fakeEnv(),
			with(func(c *config) { c.MaxMessageBytes = 16 << 20 })},
		{"the resume bounds come from flags", []string{"--replay-bytes", "65536", "--max-resumes-per-user", "2"}, fakeEnv(),
			with(func(c *config) { c.ReplayBytes, c.MaxResumesPerUser = 65536, 2 })},
		{"the resume bounds come from the environment", nil, fakeEnv("SWITCHBOARD_REPLAY_BYTES", "2097152", "SWITCHBOARD_MAX_RESUMES_PER_USER", "8"),
			with(func(c *config) { c.ReplayBytes, c.MaxResumesPerUser = 2<<20, 8 })},
		{"an empty environment variable counts as unset", nil, fakeEnv("SWITCHBOARD_ADDR", "", "SWITCHBOARD_HISTORY_SIZE", ""), documentedDefaults},
		{"limits, trusted proxies and quotas come from flags", []string{
			"--user-send-limit", "5/s,7", "--user-join-limit", "1/m", "--user-event-limit", "off",
			"--user-connect-limit", "2/10s,4", "--ip-connect-limit", "100/s,1000",
			"--trusted-proxies", "10.0.0.0/8, 127.0.0.1/32", "--max-rooms-per-user", "5", "--max-room-members", "6",
		}, fakeEnv(), with(func(c *config) {
			c.SendLimit = service.Limit{Rate: 5, Per: time.Second, Burst: 7}
			c.JoinLimit = service.Limit{Rate: 1, Per: time.Minute, Burst: 1}
			c.EventLimit = service.Limit{Rate: -1}
			c.UserConnLimit = service.Limit{Rate: 2, Per: 10 * time.Second, Burst: 4}
			c.IPConnLimit = service.Limit{Rate: 100, Per: time.Second, Burst: 1000}
			c.TrustedProxies = "10.0.0.0/8, 127.0.0.1/32"
			c.MaxRoomsPerUser, c.MaxRoomMembers = 5, 6
		})},
		{"limits, trusted proxies and quotas come from the environment", nil, fakeEnv(
			"SWITCHBOARD_USER_SEND_LIMIT", "5/s,7", "SWITCHBOARD_USER_JOIN_LIMIT", "1/m", "SWITCHBOARD_USER_EVENT_LIMIT", "off",
			"SWITCHBOARD_USER_CONNECT_LIMIT", "2/10s,4", "SWITCHBOARD_IP_CONNECT_LIMIT", "off",
			"SWITCHBOARD_TRUSTED_PROXIES", "::1/128", "SWITCHBOARD_MAX_ROOMS_PER_USER", "5", "SWITCHBOARD_MAX_ROOM_MEMBERS", "6",
		), with(func(c *config) {
			c.SendLimit = service.Limit{Rate: 5, Per: time.Second, Burst: 7}
			c.JoinLimit = service.Limit{Rate: 1, Per: time.Minute, Burst: 1}
			c.EventLimit = service.Limit{Rate: -1}
			c.UserConnLimit = service.Limit{Rate: 2, Per: 10 * time.Second, Burst: 4}
			c.IPConnLimit = service.Limit{Rate: -1}
			c.TrustedProxies = "::1/128"
			c.MaxRoomsPerUser, c.MaxRoomMembers = 5, 6
		})},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseConfig(tc.args, tc.getenv, io.Discard)
			if err != nil {
				t.Fatalf("parseConfig(%q): %v", tc.args, err)
			}
			if tc.want.NodeID == "" {
				if !subscriptions.ValidID(got.NodeID) {
					t.Fatalf("default node id %q is not a valid id", got.NodeID)
				}
				got.NodeID = ""
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("parseConfig(%q):\n got %+v\nwant %+v", tc.args, got, tc.want)
			}
		})
	}
}

func TestDevModeOffLoopbackNeedsJWTSecretOrInsecureDev(t *testing.T) {
	cases := []struct {
		name   string
		args   []string
		getenv func(string) string
	}{
		{"loopback IPv4", []string{"--addr", "127.0.0.1:8080"}, fakeEnv()},
		{"loopback IPv6", []string{"--addr", "[::1]:8080"}, fakeEnv()},
		{"localhost", []string{"--addr", "localhost:8080"}, fakeEnv()},
		{"every interface with a JWT secret", []string{"--addr", ":8080", "--jwt-secret", "s"}, fakeEnv()},
		{"every interface with a public key", []string{"--addr", ":8080", "--jwt-public-key", "k.pem"}, fakeEnv()},
		{"every interface with a JWKS URL", []string{"--addr", ":8080", "--jwt-jwks-url", "https://id.example/jwks"}, fakeEnv()},
		{"every interface with a JWKS URL from the environment", []string{"--addr", ":8080"}, fakeEnv("SWITCHBOARD_JWT_JWKS_URL", "https://id.example/jwks")},
		{"every interface with a connect hook", []string{"--addr", ":8080", "--connect-url", "https://backend.example/connect"}, fakeEnv()},
		{"every interface with --insecure-dev", []string{"--addr", ":8080", "--insecure-dev"}, fakeEnv()},
		{"every interface with SWITCHBOARD_INSECURE_DEV=1", []string{"--addr", ":8080"}, fakeEnv("SWITCHBOARD_INSECURE_DEV", "1")},
	}
	for _, tc := range cases {
		t.Run(tc.name+" is allowed", func(t *testing.T) {
			if _, err := parseConfig(tc.args, tc.getenv, io.Discard); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestParseConfigRefusesBadValues(t *testing.T) {
	cases := []struct {
		name     string
		args     []string
		getenv   func(string) string
		wantText []string // the error names the setting and the value
	}{
		{"a replay budget under 1 KiB is refused", []string{"--replay-bytes", "100"}, fakeEnv(), []string{"--replay-bytes", `"100"`}},
		{"a replay budget that is not a number is refused", nil, fakeEnv("SWITCHBOARD_REPLAY_BYTES", "1MB"), []string{"--replay-bytes", `"1MB"`}},
		{"zero resumes per user is refused", []string{"--max-resumes-per-user", "0"}, fakeEnv(), []string{"--max-resumes-per-user", `"0"`}},
		{"a negative room history size is refused", []string{"--room-history-size", "-1"}, fakeEnv(), []string{"--room-history-size", `"-1"`}},
		{"a negative replica count is refused", []string{"--wait-replicas", "-1"}, fakeEnv(), []string{"--wait-replicas", `"-1"`}},
		{"a replica wait over 2s is refused", []string{"--redis", "redis://r:6379/0", "--wait-replicas", "1", "--wait-replicas-timeout", "5s"}, fakeEnv(), []string{"--wait-replicas-timeout", `"5s"`}},
		{"two Redis modes are refused", []string{"--redis", "redis://r:6379/0", "--redis-sentinel", "m@s:26379"}, fakeEnv(), []string{"are exclusive"}},
		{"a sentinel password without --redis-sentinel is refused", []string{"--redis-sentinel-password", "x"}, fakeEnv(), []string{"go with --redis-sentinel"}},
		{"waiting for replicas needs --redis", []string{"--wait-replicas", "1"}, fakeEnv(), []string{"--wait-replicas needs --redis"}},
		{"a negative big room threshold is refused", []string{"--big-room-threshold", "-1"}, fakeEnv(), []string{"--big-room-threshold", `"-1"`}},
		{"a big room threshold that is not a number or off is refused", nil, fakeEnv("SWITCHBOARD_BIG_ROOM_THRESHOLD", "never"), []string{"--big-room-threshold", `"never"`}},
		{"a history size of zero is refused", []string{"--history-size", "0"}, fakeEnv(), []string{"--history-size", `"0"`}},
		{"a negative history size is refused", []string{"--history-size", "-5"}, fakeEnv(), []string{"--history-size", `"-5"`}},
		{"a history size that is not a number is refused", []string{"--history-size", "lots"}, fakeEnv(), []string{"--history-size", `"lots"`}},
		{"a fractional history size is refused", []string{"--history-size", "1.5"}, fakeEnv(), []string{"--history-size", `"1.5"`}},
		{"a bad history size from the environment is refused", nil, fakeEnv("SWITCHBOARD_HISTORY_SIZE", "x"), []string{"--history-size", `"x"`}},
		{"a history ttl without a unit is refused", []string{"--history-ttl", "24"}, fakeEnv(), []string{"--history-ttl", `"24"`}},
		{"an idempotency ttl under a minute is refused", []string{"--idempotency-ttl", "30s"}, fakeEnv(), []string{"--idempotency-ttl", `"30s"`}},
		{"a history ttl that is not a duration is refused", []string{"--history-ttl", "a day"}, fakeEnv(), []string{"--history-ttl", `"a day"`}},
		{"a history ttl of zero is refused", []string{"--history-ttl", "0s"}, fakeEnv(), []string{"--history-ttl", `"0s"`}},
		{"a negative history ttl is refused", []string{"--history-ttl", "-1h"}, fakeEnv(), []string{"--history-ttl", `"-1h"`}},
		{"a history ttl under a second is refused", []string{"--history-ttl", "500ms"}, fakeEnv(), []string{"--history-ttl", `"500ms"`}},
		{"a bad history ttl from the environment is refused", nil, fakeEnv("SWITCHBOARD_HISTORY_TTL", "soon"), []string{"--history-ttl", `"soon"`}},
		{"a max message size of zero is refused", []string{"--max-message-bytes", "0"}, fakeEnv(), []string{"--max-message-bytes", `"0"`}},
		{"a negative max message size is refused", []string{"--max-message-bytes", "-1"}, fakeEnv(), []string{"--max-message-bytes", `"-1"`}},
		{"a max message size that is not a number is refused", []string{"--max-message-bytes", "64k"}, fakeEnv(), []string{"--max-message-bytes", `"64k"`}},
		{"a max message size over 16 MiB is refused", []string{"--max-message-bytes", "16777217"}, fakeEnv(), []string{"--max-message-bytes", `"16777217"`}},
		{"a bad max message size from the environment is refused", nil, fakeEnv("SWITCHBOARD_MAX_MESSAGE_BYTES", "big"), []string{"--max-message-bytes", `"big"`}},
		{"a max token lifetime under a minute is refused", []string{"--max-token-lifetime", "30s"}, fakeEnv(), []string{"--max-token-lifetime", `"30s"`}},
		{"a max token lifetime without a unit is refused", []string{"--max-token-lifetime", "24"}, fakeEnv(), []string{"--max-token-lifetime", `"24"`}},
		{"a bad max token lifetime from the environment is refused", nil, fakeEnv("SWITCHBOARD_MAX_TOKEN_LIFETIME", "forever"), []string{"--max-token-lifetime", `"forever"`}},
		{"--redis with --redis-cluster is refused", []string{"--redis", "redis://r:6379/0", "--redis-cluster", "r1:7000"}, fakeEnv(), []string{"--redis", "--redis-cluster"}},
		{"--redis with a cluster from the environment is refused", []string{"--redis", "redis://r:6379/0"}, fakeEnv("SWITCHBOARD_REDIS_CLUSTER", "r1:7000"), []string{"--redis", "--redis-cluster"}},
		{"an event queue under 1 MiB is refused", []string{"--event-queue-bytes", "1000"}, fakeEnv(), []string{"--event-queue-bytes", `"1000"`}},
		{"an event queue size that is not a number is refused", nil, fakeEnv("SWITCHBOARD_EVENT_QUEUE_BYTES", "1GB"), []string{"--event-queue-bytes", `"1GB"`}},
		{"a user share of zero is refused", []string{"--event-user-bytes", "0"}, fakeEnv(), []string{"--event-user-bytes", `"0"`}},
		{"a system reserve of zero is refused", []string{"--event-system-reserve", "0"}, fakeEnv(), []string{"--event-system-reserve", `"0"`}},
		{"a system reserve of the whole queue is refused", []string{"--event-system-reserve", "1"}, fakeEnv(), []string{"--event-system-reserve", `"1"`}},
		{"a system reserve that is not a number is refused", nil, fakeEnv("SWITCHBOARD_EVENT_SYSTEM_RESERVE", "25%"), []string{"--event-system-reserve", `"25%"`}},
		{"an unknown flag is refused", []string{"--redis-url", "x"}, fakeEnv(), []string{"redis-url"}},
		{"a stray argument is refused", []string{"serve"}, fakeEnv(), []string{`"serve"`}},
		{"a flag without its value is refused", []string{"--addr"}, fakeEnv(), []string{"addr"}},
		{"a send limit without a period is refused", []string{"--user-send-limit", "50"}, fakeEnv(), []string{"--user-send-limit", `"50"`}},
		{"a bad connect limit from the environment is refused", nil, fakeEnv("SWITCHBOARD_IP_CONNECT_LIMIT", "lots/s"), []string{"--ip-connect-limit", `"lots/s"`}},
		{"a trusted proxy that is not a CIDR is refused", []string{"--trusted-proxies", "10.0.0.1"}, fakeEnv(), []string{"--trusted-proxies", `"10.0.0.1"`}},
		{"zero rooms per user is refused", []string{"--max-rooms-per-user", "0"}, fakeEnv(), []string{"--max-rooms-per-user", `"0"`}},
		{"a room member quota that is not a number is refused", nil, fakeEnv("SWITCHBOARD_MAX_ROOM_MEMBERS", "many"), []string{"--max-room-members", `"many"`}},
		{"dev mode on every interface is refused", []string{"--addr", ":8080"}, fakeEnv(), []string{"dev mode", `":8080"`, "--insecure-dev"}},
		{"dev mode on a public address is refused", []string{"--addr", "10.1.2.3:8080"}, fakeEnv(), []string{"dev mode", `"10.1.2.3:8080"`}},
		{"dev mode on 0.0.0.0 from the environment is refused", nil, fakeEnv("SWITCHBOARD_ADDR", "0.0.0.0:80"), []string{"dev mode", `"0.0.0.0:80"`}},
		{"dev mode with only an issuer is refused off loopback", []string{"--addr", ":8080", "--jwt-issuer", "https://id.example/"}, fakeEnv(), []string{"--jwt-issuer", "token key"}},
		{"an issuer without a token key is refused", []string{"--jwt-issuer", "https://id.example/"}, fakeEnv(), []string{"--jwt-issuer", "token key"}},
		{"an audience without a token key is refused", nil, fakeEnv("SWITCHBOARD_JWT_AUDIENCE", "switchboard"), []string{"--jwt-audience", "token key"}},
		{"a JWKS URL without a scheme is refused", []string{"--jwt-jwks-url", "id.example/jwks"}, fakeEnv(), []string{"--jwt-jwks-url", `"id.example/jwks"`}},
		{"a JWKS URL of another scheme is refused", nil, fakeEnv("SWITCHBOARD_JWT_JWKS_URL", "file:///etc/jwks.json"), []string{"--jwt-jwks-url", `"file:///etc/jwks.json"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var stderr strings.Builder
			_, err := parseConfig(tc.args, tc.getenv, &stderr)
			if err == nil {
				t.Fatalf("parseConfig(%q) accepted it", tc.args)
			}
			for _, s := range tc.wantText {
				if !strings.Contains(err.Error(), s) {
					t.Fatalf("error %q does not mention %s", err, s)
				}
			}
		})
	}
}

func TestParseConfigHelpListsEveryFlagWithItsVariable(t *testing.T) {
	var stderr strings.Builder
	_, err := parseConfig([]string{"--help"}, fakeEnv(), &stderr)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("--help: %v, want flag.ErrHelp", err)
	}
	for _, name := range []string{
		"addr", "redis", "redis-cluster", "jwt-secret", "jwt-public-key", "jwt-jwks-url", "jwt-issuer", "jwt-audience", "api-key", "admin-key", "allowed-origins", "node-id",
		"history-size", "room-history-size", "history-ttl", "max-message-bytes", "webhook-url", "webhook-secret",
		"max-token-lifetime", "dev-hosts",
		"user-send-limit", "user-join-limit", "user-event-limit", "user-connect-limit", "ip-connect-limit",
		"trusted-proxies", "max-rooms-per-user", "max-room-members", "big-room-threshold",
		"event-queue-bytes", "event-user-bytes", "event-system-reserve",
	} {
		v := "SWITCHBOARD_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
		if !strings.Contains(stderr.String(), "-"+name) || !strings.Contains(stderr.String(), v) {
			t.Errorf("usage does not list -%s with %s:\n%s", name, v, stderr.String())
		}
	}
}

func TestAllowedOriginsSplitOnCommas(t *testing.T) {
	cases := []struct {
		name, in string
		want     []string
	}{
		{"an empty list allows only the same origin", "", nil},
		{"one origin is kept", "https://a.example", []string{"https://a.example"}},
		{"spaces and empty items are dropped", " https://a.example , ,https://b.example,", []string{"https://a.example", "https://b.example"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := (config{AllowedOrigins: tc.in}).origins(); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("origins(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestDefaultNodeIDIsAValidID(t *testing.T) {
	cases := []struct {
		name, in, want string
	}{
		{"a plain host name is kept", "web-1.local-42", "web-1.local-42"},
		{"characters outside the id alphabet become dashes", "my host:x/y-42", "my-host-x-y-42"},
		{"a long host name is cut to 128 characters", strings.Repeat("h", 200) + "-1", strings.Repeat("h", 128)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := sanitizeNode(tc.in)
			if got != tc.want || !subscriptions.ValidID(got) {
				t.Fatalf("sanitizeNode(%q) = %q, want the valid id %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestDevHostsSplitOnCommas(t *testing.T) {
	cases := []struct {
		name, in string
		want     []string
	}{
		{"an empty list serves only loopback names", "", nil},
		{"one name is kept", "switchboard", []string{"switchboard"}},
		{"spaces and empty items are dropped", " switchboard , ,app.test,", []string{"switchboard", "app.test"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := (config{DevHosts: tc.in}).devHosts(); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("devHosts(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestTokenKeyFlagsBuildTheVerifier(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ec384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	writePEM := func(name string, pub any) string {
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	rsaPEM, p384PEM := writePEM("rsa.pem", rsaKey.Public()), writePEM("p384.pem", ec384.Public())
	jwk, err := jwkset.NewJWKFromKey(rsaKey.Public(), jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: "k1"}})
	if err != nil {
		t.Fatal(err)
	}
	jwksDoc, err := json.Marshal(jwkset.JWKSMarshal{Keys: []jwkset.JWKMarshal{jwk.Marshal()}})
	if err != nil {
		t.Fatal(err)
	}
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(jwksDoc) }))
	t.Cleanup(jwks.Close)

	now := time.Now()
	claims := jwt.MapClaims{"sub": "dave", "iss": "https://id.example/", "exp": now.Add(time.Hour).Unix()}
	signed := func(method jwt.SigningMethod, key any, kid string) string {
		tok := jwt.NewWithClaims(method, claims)
		if kid != "" {
			tok.Header["kid"] = kid
		}
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	rs256, kidRS256, hs256 := signed(jwt.SigningMethodRS256, rsaKey, ""), signed(jwt.SigningMethodRS256, rsaKey, "k1"), signed(jwt.SigningMethodHS256, []byte("s3cret"), "")
	build := func(t *testing.T, args ...string) (*tokens.Verifier, *prometheus.Registry, error) {
		t.Helper()
		cfg, err := parseConfig(args, fakeEnv(), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		reg := prometheus.NewRegistry()
		v, err := newVerifier(cfg, reg, slog.New(slog.DiscardHandler))
		return v, reg, err
	}
	verifies := func(v *tokens.Verifier, token string) bool {
		_, err := v.Verify(context.Background(), token, now)
		return err == nil
	}

	t.Run("no key is dev mode: no verifier", func(t *testing.T) {
		if v, _, err := build(t); v != nil || err != nil {
			t.Fatalf("newVerifier = %v, %v; want nil, nil", v, err)
		}
	})
	t.Run("a public key file verifies RS256 and nothing else", func(t *testing.T) {
		v, _, err := build(t, "--jwt-public-key", rsaPEM)
		if err != nil {
			t.Fatal(err)
		}
		if !verifies(v, rs256) || verifies(v, hs256) {
			t.Fatal("want RS256 accepted and HS256 refused")
		}
	})
	t.Run("a JWKS URL verifies by kid and registers its metrics", func(t *testing.T) {
		v, reg, err := build(t, "--jwt-jwks-url", jwks.URL)
		if err != nil {
			t.Fatal(err)
		}
		if !verifies(v, kidRS256) || verifies(v, hs256) {
			t.Fatal("want the JWKS key's RS256 token accepted and HS256 refused")
		}
		families, err := reg.Gather()
		if err != nil || len(families) != 2 {
			t.Fatalf("registered %d metric families (%v), want the JWKS failures and keys", len(families), err)
		}
	})
	t.Run("all three keys together each verify their own tokens", func(t *testing.T) {
		v, _, err := build(t, "--jwt-secret", "s3cret", "--jwt-public-key", rsaPEM, "--jwt-jwks-url", jwks.URL)
		if err != nil {
			t.Fatal(err)
		}
		if !verifies(v, rs256) || !verifies(v, kidRS256) || !verifies(v, hs256) {
			t.Fatal("want HS256, RS256 by PEM and RS256 by kid accepted")
		}
	})
	t.Run("the issuer and audience reach the verifier", func(t *testing.T) {
		v, _, err := build(t, "--jwt-public-key", rsaPEM, "--jwt-issuer", "https://id.example/", "--jwt-audience", "switchboard")
		if err != nil {
			t.Fatal(err)
		}
		if verifies(v, rs256) {
			t.Fatal("a token without the audience was accepted")
		}
	})
	refusals := []struct {
		name string
		args []string
		why  string
	}{
		{"a public key file that does not exist", []string{"--jwt-public-key", filepath.Join(dir, "nope.pem")}, "--jwt-public-key"},
		{"a public key on P-384", []string{"--jwt-public-key", p384PEM}, "P-256"},
		{"a JWKS URL nobody serves", []string{"--jwt-jwks-url", "http://127.0.0.1:1/jwks"}, "fetching the JWKS"},
	}
	for _, tc := range refusals {
		t.Run(tc.name+" stops the node at start", func(t *testing.T) {
			if v, _, err := build(t, tc.args...); err == nil || !strings.Contains(err.Error(), tc.why) {
				t.Fatalf("newVerifier = %v, %v; want an error saying %q", v, err, tc.why)
			}
		})
	}
}
