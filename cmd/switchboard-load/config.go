package main

import (
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Defaults of the flags, named so that the usage text, the tests and the docs agree.
const (
	defaultURL          = "http://127.0.0.1:8080"
	defaultUsers        = 1000
	defaultMembers      = 1000
	defaultConns        = 10000
	defaultPublishers   = 16
	defaultRoomPosters  = 4
	defaultDialers      = 200
	defaultDuration     = 10 * time.Second
	defaultGrace        = 5 * time.Second
	defaultHold         = 2 * time.Second
	defaultPayloadBytes = 100
	defaultRPCConns     = 400
	defaultInFlight     = 4
	defaultConnRate     = 45 // frames/s per connection, below a node's limit of 50
	// defaultHistoryConnRate is --conn-rate's default with --frame history: a node answers
	// at most 10 history frames a second per connection (burst 20).
	defaultHistoryConnRate = 9
	defaultBackendAddr     = "127.0.0.1:9099"
	defaultCacheS          = 60
	defaultCallTimeout     = 10 * time.Second
	defaultHTTPTimeout     = 10 * time.Second
	defaultDialTimeout     = 10 * time.Second
	// The soak scenario's defaults: a steady, mixed load for ten minutes, with users
	// leaving and coming back and the node's Pub/Sub link killed now and then.
	defaultSoakDuration   = 10 * time.Minute
	defaultSoakGrace      = 15 * time.Second
	defaultSoakPublishers = 8
	defaultSoakRate       = 200
	defaultSoakRoomRate   = 20
	defaultSoakRooms      = 4
	defaultSoakRoomSize   = 50
	defaultSoakBigRoom    = 500 // the server's default --big-room-threshold: the big path
	defaultChurnRate      = 20
	defaultOffline        = time.Second
	defaultSampleEvery    = 30 * time.Second
	defaultKillEvery      = 30 * time.Second
	// countOnlyDuration bounds a run given --count without --duration, so that a server that
	// stops answering cannot keep the tool running forever.
	countOnlyDuration = 10 * time.Minute
	// maxPayloadBytes is far above the server's default limit (64 KiB) so that a user can
	// probe the limit, but stops typos like 10000000.
	maxPayloadBytes = 1 << 20
)

// scenarios lists the scenario names in the order the usage text shows them.
var scenarios = []string{"dm", "fanout", "conns", "rpc", "soak"}

// maxInFlight is a node's limit of rpc calls waiting per connection (docs/hooks.md).
const maxInFlight = 16

// config is everything the command line sets for one run.
type config struct {
	scenario string

	// Common to every scenario.
	urls         []string // base URLs of the nodes, http(s)://host:port
	apiKey       string
	jwtSecret    string
	jwtKeyPath   string  // --jwt-private-key
	jwtKID       string  // --jwt-kid
	signer       *signer // from the three above; nil: dev auth
	userPrefix   string
	json         bool
	quiet        bool
	payloadBytes int
	dialers      int
	dialTimeout  time.Duration
	httpTimeout  time.Duration
	idemKeys     bool // dm, fanout: every POST carries a fresh Idempotency-Key
	grace        time.Duration
	pid          int    // the server's pid, for RSS and CPU; 0 = not measured
	redisPID     int    // redis-server's pid, for CPU; 0 = not measured
	cpuProfile   string // file for a CPU profile of the tool itself
	// compression offers permessage-deflate on every WebSocket (--compression); wireIn
	// counts the bytes the WebSockets read from their sockets, for the bandwidth figure.
	compression bool
	wireIn      *atomic.Int64

	// dm and fanout.
	publishers int
	rate       float64 // messages per second over all publishers; 0 = as fast as possible
	duration   time.Duration
	count      int64 // messages to send; 0 = until duration

	users   int    // dm: connected users, one connection each
	members int    // fanout: room members, one connection each
	room    string // fanout

	conns int           // conns and rpc: connections to open
	hold  time.Duration // conns: how long to keep them open

	via   string   // dm: "http" (POST /v1/users/{u}/messages) or "ws" (send frames)
	jwtDM []string // dm claim of the minted tokens (--jwt-dm)

	inFlight     int           // rpc: calls each connection keeps waiting
	connRate     float64       // rpc: frames per second per connection; 0 = no cap
	callTimeout  time.Duration // rpc: how long a call may wait for its result
	method       string        // rpc: the method called
	frame        string        // rpc: the frame sent, frameRPC or frameHistory
	historyLimit int           // rpc --frame history: the page size asked for

	backend backendConfig // --serve-backend and its flags (dm, rpc)

	soak soakConfig
}

// soakConfig is what only the soak scenario sets; users, publishers, rate (of DMs) and
// duration are config's.
type soakConfig struct {
	roomPublishers int
	roomRate       float64 // room posts per second over all rooms; 0 = none
	rooms          int     // small rooms
	roomMembers    int     // members of each small room
	bigRoomMembers int     // members of the one big room; 0 = no big room
	churnRate      float64 // connections closed (and resumed) per second; 0 = none
	offline        time.Duration
	sampleEvery    time.Duration
	killEvery      time.Duration // CLIENT KILL TYPE pubsub; 0 = never
	redisAddr      string        // the Redis the nodes use: host:port or redis:// URL
	firstPosts     bool          // one post to each room before the churn starts
}

// errHelp is returned by parseArgs when the user asked for the usage text.
var errHelp = errors.New("help requested")

// idPattern is the pattern of docs/protocol.md ("Names and ids") for user ids and room names.
var idPattern = regexp.MustCompile(`^[A-Za-z0-9._@+-]{1,128}$`)

// userSuffixLen is the longest suffix the tool appends to --user-prefix ("-m0000001").
const userSuffixLen = 10

// parseArgs parses "<scenario> [flags]". Usage and flag errors are written to stderr.
func parseArgs(args []string, stderr io.Writer) (config, error) {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" || args[0] == "-help" {
		usage(stderr)
		if len(args) == 0 {
			return config{}, errors.New("no scenario given")
		}
		return config{}, errHelp
	}
	c := config{scenario: args[0], wireIn: new(atomic.Int64)}
	fs := flag.NewFlagSet("switchboard-load "+c.scenario, flag.ContinueOnError)
	fs.SetOutput(stderr)

	var urls string
	fs.StringVar(&urls, "url", defaultURL, "base URL of a node; comma-separated to spread connections and requests over several nodes")
	fs.StringVar(&c.apiKey, "api-key", "", "bearer key for /v1 (the server's --api-key)")
	fs.StringVar(&c.jwtSecret, "jwt-secret", "", "HS256 secret to mint user tokens (the server's --jwt-secret); with no key, dev auth ?user=")
	fs.StringVar(&c.jwtKeyPath, "jwt-private-key", "", "PEM private key to mint user tokens: RSA RS256, EC P-256 ES256, Ed25519 EdDSA (its public key is the server's --jwt-public-key or in its JWKS)")
	fs.StringVar(&c.jwtKID, "jwt-kid", "", "kid header of the minted tokens (the key's id in the server's JWKS)")
	fs.StringVar(&c.userPrefix, "user-prefix", "", `prefix of the user ids (and room) of this run; default "load-<random>" so that runs never share users`)
	fs.BoolVar(&c.json, "json", false, "print the result as one JSON object instead of the table")
	fs.BoolVar(&c.quiet, "quiet", false, "no progress lines on stderr")
	fs.IntVar(&c.dialers, "dialers", defaultDialers, "concurrent WebSocket dials")
	fs.DurationVar(&c.dialTimeout, "dial-timeout", defaultDialTimeout, "how long one connection may take to receive its welcome")
	fs.IntVar(&c.pid, "pid", 0, "the server's process id: report its RSS and CPU time (Linux /proc)")
	fs.IntVar(&c.redisPID, "redis-pid", 0, "redis-server's process id: report its CPU time")
	fs.StringVar(&c.cpuProfile, "cpuprofile", "", "write a CPU profile of the load tool itself to this file")
	fs.BoolVar(&c.compression, "compression", false, "offer permessage-deflate on every WebSocket (the server compresses only with its own --compression); compare the report's wire bytes and CPU with and without")

	switch c.scenario {
	case "rpc":
		fs.IntVar(&c.conns, "conns", defaultRPCConns, "WebSockets, one user each, each keeping --in-flight calls waiting")
		fs.IntVar(&c.inFlight, "in-flight", defaultInFlight, fmt.Sprintf("rpc calls each connection keeps waiting, 1 to %d (a node's limit)", maxInFlight))
		fs.Float64Var(&c.rate, "rate", 0, "target calls per second over all connections; 0 = as fast as the calls in flight allow")
		fs.Float64Var(&c.connRate, "conn-rate", defaultConnRate, "most frames per second one connection sends, under a node's frame limit (50/s; 10/s for history frames, whose default is 9); 0 = no cap")
		fs.DurationVar(&c.duration, "duration", defaultDuration, "how long to call; with --count alone, a safety bound of "+countOnlyDuration.String())
		fs.Int64Var(&c.count, "count", 0, "how many calls to make; 0 = as many as --duration allows")
		fs.DurationVar(&c.callTimeout, "call-timeout", defaultCallTimeout, "how long a call may wait for its result before it counts as a timeout")
		fs.IntVar(&c.payloadBytes, "payload-bytes", defaultPayloadBytes, "size of each call's data, padded")
		fs.StringVar(&c.method, "method", "load.echo", "the rpc method called")
		fs.StringVar(&c.frame, "frame", frameRPC, `the frame each call sends: "rpc" (to the node's --rpc-url backend) or "history" (a page of --history-limit messages of --room, whose members the connections become; the room is filled first)`)
		fs.IntVar(&c.historyLimit, "history-limit", 50, "with --frame history: messages per page, 1 to 100")
		fs.StringVar(&c.room, "room", "", `with --frame history: the room; default "<user-prefix>-room"`)
		addBackendFlags(fs, &c.backend)
	case "dm", "fanout":
		publishers := defaultPublishers
		if c.scenario == "fanout" {
			publishers = defaultRoomPosters
		}
		fs.IntVar(&c.publishers, "publishers", publishers, "concurrent HTTP publishers")
		fs.Float64Var(&c.rate, "rate", 0, "target messages per second over all publishers; 0 = as fast as possible")
		fs.DurationVar(&c.duration, "duration", defaultDuration, "how long to send; with --count alone, a safety bound of "+countOnlyDuration.String())
		fs.Int64Var(&c.count, "count", 0, "how many messages to send; 0 = as many as --duration allows")
		fs.DurationVar(&c.grace, "grace", defaultGrace, "how long to wait after sending for the last deliveries; a message not delivered by then is lost")
		fs.DurationVar(&c.httpTimeout, "http-timeout", defaultHTTPTimeout, "timeout of one HTTP request")
		fs.BoolVar(&c.idemKeys, "idempotency-keys", false, "send every POST with a fresh Idempotency-Key (what the Go client does), to measure what the key costs")
		fs.IntVar(&c.payloadBytes, "payload-bytes", defaultPayloadBytes, "size of each JSON message body, padded (at least what the timestamp and sequence need)")
		if c.scenario == "dm" {
			fs.IntVar(&c.users, "users", defaultUsers, "connected users, one WebSocket each; messages go to them in turn")
			fs.StringVar(&c.via, "via", "http", `how messages are sent: "http" (POST /v1/users/{u}/messages) or "ws" (send frames on the users' own sockets, each user to the next)`)
			fs.Func("jwt-dm", "comma-separated dm claim of the minted tokens (\"*\" grants every recipient); without it, client DMs need the authorize hook", func(v string) error {
				c.jwtDM = splitList(v)
				return nil
			})
			addBackendFlags(fs, &c.backend)
		} else {
			fs.IntVar(&c.members, "members", defaultMembers, "room members, one WebSocket each")
			fs.StringVar(&c.room, "room", "", `room name; default "<user-prefix>-room"`)
		}
	case "soak":
		fs.IntVar(&c.users, "users", defaultUsers, "connected users, one WebSocket each; DMs go to them in turn and the rooms' members are among them")
		fs.IntVar(&c.publishers, "publishers", defaultSoakPublishers, "concurrent HTTP publishers of DMs")
		fs.Float64Var(&c.rate, "rate", defaultSoakRate, "DMs per second over all publishers")
		fs.DurationVar(&c.duration, "duration", defaultSoakDuration, "how long to send")
		fs.DurationVar(&c.grace, "grace", defaultSoakGrace, "how long to wait after sending for the last deliveries; a message not delivered by then is lost")
		fs.DurationVar(&c.httpTimeout, "http-timeout", defaultHTTPTimeout, "timeout of one HTTP request")
		fs.IntVar(&c.payloadBytes, "payload-bytes", defaultPayloadBytes, "size of each JSON message body, padded")
		fs.IntVar(&c.soak.roomPublishers, "room-publishers", 2, "concurrent HTTP publishers of room posts")
		fs.Float64Var(&c.soak.roomRate, "room-rate", defaultSoakRoomRate, "room posts per second over all rooms, in turn; 0 = no room posts")
		fs.IntVar(&c.soak.rooms, "rooms", defaultSoakRooms, "small rooms (fanned out on write), each of --room-members users")
		fs.IntVar(&c.soak.roomMembers, "room-members", defaultSoakRoomSize, "members of each small room (below the server's --big-room-threshold)")
		fs.IntVar(&c.soak.bigRoomMembers, "big-room-members", defaultSoakBigRoom, "members of one more room, big if at least the server's --big-room-threshold (fanned out on read); 0 = no such room")
		fs.Float64Var(&c.soak.churnRate, "churn-rate", defaultChurnRate, "connections closed per second, each by a random user that stays away up to --offline and resumes after its last message; 0 = no churn")
		fs.DurationVar(&c.soak.offline, "offline", defaultOffline, "the longest a user closed by the churn stays away before it resumes")
		fs.DurationVar(&c.soak.sampleEvery, "sample-every", defaultSampleEvery, "how often to sample the server's RSS and goroutines (and print a line)")
		fs.DurationVar(&c.soak.killEvery, "kill-pubsub-every", defaultKillEvery, "how often to kill the nodes' Pub/Sub connections (CLIENT KILL TYPE pubsub on --redis-addr); 0 = never")
		fs.BoolVar(&c.soak.firstPosts, "first-posts", true, "post once to each room, with every member connected, before the soak starts, so that a room turns big with nobody away (false: the turn happens under churn)")
		fs.StringVar(&c.soak.redisAddr, "redis-addr", "", "the Redis the nodes use (host:port or redis://...), for --kill-pubsub-every; without it the link is not killed")
	case "conns":
		fs.IntVar(&c.conns, "conns", defaultConns, "connections to open, one user each")
		fs.DurationVar(&c.hold, "hold", defaultHold, "how long to hold the connections open before closing them")
	default:
		usage(stderr)
		return c, fmt.Errorf("unknown scenario %q (want one of %s)", c.scenario, strings.Join(scenarios, ", "))
	}
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: switchboard-load %s [flags]\n\n%s\n\nFlags:\n", c.scenario, scenarioHelp[c.scenario])
		fs.PrintDefaults()
	}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return c, errHelp
		}
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q (flags go after the scenario)", fs.Arg(0))
	}
	if c.scenario == "rpc" && c.frame == frameHistory && !flagSet(fs, "conn-rate") {
		c.connRate = defaultHistoryConnRate
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if c.count > 0 && !set["duration"] {
		c.duration = countOnlyDuration
	}
	if c.userPrefix == "" {
		c.userPrefix = "load-" + randomSuffix()
	}
	if (c.scenario == "fanout" || c.scenario == "rpc") && c.room == "" {
		c.room = c.userPrefix + "-room"
	}
	var err error
	if c.urls, err = parseURLs(urls); err != nil {
		return c, err
	}
	if c.signer, err = newSigner(c.jwtSecret, c.jwtKeyPath, c.jwtKID); err != nil {
		return c, err
	}
	if c.signer != nil {
		c.signer.dm = c.jwtDM
	}
	return c, c.validate()
}

// validate checks the values that flag parsing cannot.
func (c *config) validate() error {
	checks := []error{positive("dialers", c.dialers)}
	if !idPattern.MatchString(c.userPrefix) || len(c.userPrefix)+userSuffixLen > 128 {
		checks = append(checks, fmt.Errorf("--user-prefix %q must match ^[A-Za-z0-9._@+-]+$ and be at most %d characters", c.userPrefix, 128-userSuffixLen))
	}
	if c.dialTimeout <= 0 {
		checks = append(checks, errors.New("--dial-timeout must be positive"))
	}
	if c.pid < 0 || c.redisPID < 0 {
		checks = append(checks, errors.New("--pid and --redis-pid must be process ids"))
	}
	switch c.scenario {
	case "dm", "fanout":
		checks = append(checks, positive("publishers", c.publishers))
		if c.rate < 0 {
			checks = append(checks, fmt.Errorf("--rate must be 0 (as fast as possible) or positive, got %g", c.rate))
		}
		if c.duration <= 0 {
			checks = append(checks, errors.New("--duration must be positive: every run is bounded"))
		}
		if c.count < 0 {
			checks = append(checks, errors.New("--count must be 0 (until --duration) or positive"))
		}
		if c.grace < 0 {
			checks = append(checks, errors.New("--grace must not be negative"))
		}
		if c.httpTimeout <= 0 {
			checks = append(checks, errors.New("--http-timeout must be positive"))
		}
		if c.payloadBytes < 0 || c.payloadBytes > maxPayloadBytes {
			checks = append(checks, fmt.Errorf("--payload-bytes must be from 0 to %d, got %d", maxPayloadBytes, c.payloadBytes))
		}
		if c.scenario == "dm" {
			checks = append(checks, positive("users", c.users))
			if c.via != "http" && c.via != "ws" {
				checks = append(checks, fmt.Errorf(`--via must be "http" or "ws", got %q`, c.via))
			}
			if len(c.jwtDM) > 0 && c.signer == nil {
				checks = append(checks, errors.New("--jwt-dm is a claim of minted tokens: set --jwt-secret or --jwt-private-key"))
			}
			checks = append(checks, c.backend.validate())
		} else {
			checks = append(checks, positive("members", c.members))
			if !idPattern.MatchString(c.room) {
				checks = append(checks, fmt.Errorf("--room %q must match ^[A-Za-z0-9._@+-]{1,128}$", c.room))
			}
		}
	case "soak":
		checks = append(checks, c.validateSoak()...)
	case "rpc":
		checks = append(checks, c.validateRPC()...)
	case "conns":
		checks = append(checks, positive("conns", c.conns))
		if c.hold < 0 {
			checks = append(checks, errors.New("--hold must not be negative"))
		}
	}
	return errors.Join(checks...)
}

// validateSoak checks the soak scenario's flags.
func (c *config) validateSoak() []error {
	checks := []error{positive("users", c.users), positive("publishers", c.publishers), positive("room-publishers", c.soak.roomPublishers)}
	if c.rate <= 0 {
		checks = append(checks, fmt.Errorf("--rate must be positive: a soak runs at a steady rate, got %g", c.rate))
	}
	if c.soak.roomRate < 0 || c.soak.churnRate < 0 {
		checks = append(checks, errors.New("--room-rate and --churn-rate must be 0 (none) or positive"))
	}
	if c.duration <= 0 || c.grace < 0 || c.httpTimeout <= 0 || c.soak.offline < 0 {
		checks = append(checks, errors.New("--duration and --http-timeout must be positive, --grace and --offline not negative"))
	}
	if c.soak.sampleEvery <= 0 || c.soak.killEvery < 0 {
		checks = append(checks, errors.New("--sample-every must be positive and --kill-pubsub-every not negative"))
	}
	if c.soak.rooms < 0 || c.soak.roomMembers < 0 || c.soak.bigRoomMembers < 0 {
		checks = append(checks, errors.New("--rooms, --room-members and --big-room-members must not be negative"))
	}
	if c.soak.roomMembers > c.users || c.soak.bigRoomMembers > c.users {
		checks = append(checks, fmt.Errorf("--room-members (%d) and --big-room-members (%d) are taken from the --users (%d): at most that many", c.soak.roomMembers, c.soak.bigRoomMembers, c.users))
	}
	if c.soak.roomRate > 0 && (c.soak.rooms == 0 || c.soak.roomMembers == 0) && c.soak.bigRoomMembers == 0 {
		checks = append(checks, errors.New("--room-rate needs a room: --rooms with --room-members, or --big-room-members"))
	}
	if c.payloadBytes < 0 || c.payloadBytes > maxPayloadBytes {
		checks = append(checks, fmt.Errorf("--payload-bytes must be from 0 to %d, got %d", maxPayloadBytes, c.payloadBytes))
	}
	return checks
}

// positive returns an error unless v is at least 1.
func positive(name string, v int) error {
	if v < 1 {
		return fmt.Errorf("--%s must be at least 1, got %d", name, v)
	}
	return nil
}

// validateRPC checks the rpc scenario's flags.
func (c *config) validateRPC() []error {
	var checks []error
	if c.conns < 1 {
		checks = append(checks, fmt.Errorf("--conns must be at least 1, got %d", c.conns))
	}
	if c.inFlight < 1 || c.inFlight > maxInFlight {
		checks = append(checks, fmt.Errorf("--in-flight must be from 1 to %d (a node refuses more with rate_limited), got %d", maxInFlight, c.inFlight))
	}
	if c.rate < 0 || c.connRate < 0 {
		checks = append(checks, errors.New("--rate and --conn-rate must be 0 (no target, no cap) or positive"))
	}
	if c.duration <= 0 {
		checks = append(checks, errors.New("--duration must be positive: every run is bounded"))
	}
	if c.count < 0 {
		checks = append(checks, errors.New("--count must be 0 (until --duration) or positive"))
	}
	if c.callTimeout <= 0 {
		checks = append(checks, errors.New("--call-timeout must be positive"))
	}
	switch c.frame {
	case frameRPC:
	case frameHistory:
		if c.historyLimit < 1 || c.historyLimit > 100 {
			checks = append(checks, fmt.Errorf("--history-limit must be from 1 to 100 (a node's page bound), got %d", c.historyLimit))
		}
		if !idPattern.MatchString(c.room) {
			checks = append(checks, fmt.Errorf("--room %q must match ^[A-Za-z0-9._@+-]{1,128}$", c.room))
		}
	default:
		checks = append(checks, fmt.Errorf(`--frame must be "rpc" or "history", got %q`, c.frame))
	}
	if c.payloadBytes < 0 || c.payloadBytes > maxPayloadBytes {
		checks = append(checks, fmt.Errorf("--payload-bytes must be from 0 to %d, got %d", maxPayloadBytes, c.payloadBytes))
	}
	if !idPattern.MatchString(c.method) {
		checks = append(checks, fmt.Errorf("--method %q must match ^[A-Za-z0-9._@+-]{1,128}$", c.method))
	}
	return append(checks, c.backend.validate())
}

// splitList splits a comma-separated list, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

// parseURLs splits a comma-separated list of http(s) base URLs.
func parseURLs(s string) ([]string, error) {
	var out []string
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		u, err := url.Parse(part)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("--url %q: want http://host:port or https://host:port", part)
		}
		if u.RawQuery != "" || u.Fragment != "" {
			return nil, fmt.Errorf("--url %q: a base URL has no query or fragment", part)
		}
		out = append(out, strings.TrimSuffix(u.String(), "/"))
	}
	if len(out) == 0 {
		return nil, errors.New("--url: at least one URL is needed")
	}
	return out, nil
}

// randomSuffix returns 6 random base-36 characters.
func randomSuffix() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	var n uint64
	for _, x := range b {
		n = n<<8 | uint64(x)
	}
	s := strconv.FormatUint(n, 36)
	return s[len(s)-6:]
}

// scenarioHelp is the one-paragraph description of each scenario.
var scenarioHelp = map[string]string{
	"dm": `dm: connect --users users over WebSockets, wait for every welcome, then send direct
messages (POST /v1/users/{u}/messages) from --publishers concurrent HTTP clients at --rate
for --duration or --count; with --via ws, the users send them over their own sockets.
Reports accepted/s, delivered/s, latency from the send
timestamp in each payload, and every message lost, duplicated or out of order.`,
	"fanout": `fanout: add --members users to one room (PUT /v1/rooms/{room}/members/{u}), connect
them, then post room messages (POST /v1/rooms/{room}/messages) at --rate for --duration or
--count. Reports deliveries/s, the time from post to the last member's delivery, and every
delivery lost, duplicated or out of order.`,
	"rpc": `rpc: open --conns WebSockets and keep --in-flight rpc frames waiting on each, at --rate
for --duration or --count, against a node started with --rpc-url. With --serve-backend the
tool serves that backend itself (it checks each request's signature and answers at once,
or after --backend-delay, with the time its handler took). Reports calls/s, the round
trip, and the overhead: the round trip minus the backend's own time. With --frame history
the calls are history frames instead (pages of --history-limit messages of --room, which
the tool fills first; no backend): what a client opening a room costs.`,
	"soak": `soak: keep --users users connected for --duration (10m) while --churn-rate of them
a second leave and resume after their last message, send DMs at --rate and room posts at
--room-rate to --rooms small rooms and one big room, and kill the nodes' Pub/Sub link every
--kill-pubsub-every on --redis-addr. Samples the server's RSS and goroutines every
--sample-every, and fails on any DM or room delivery lost, duplicated or out of order.`,
	"conns": `conns: open --conns WebSockets, one user each, from --dialers concurrent dialers, as fast
as possible. Reports connections/s with the welcome received (the subscription confirmed),
failures, and with --pid the server's RSS per connection; holds them --hold, then closes.`,
}

func usage(w io.Writer) {
	fmt.Fprintf(w, `switchboard-load sizes a Switchboard deployment: it drives real WebSockets and HTTP
requests against running nodes and checks that nothing is lost, duplicated or reordered.

Usage: switchboard-load <scenario> [flags]

`)
	for _, s := range scenarios {
		fmt.Fprintf(w, "%s\n\n", scenarioHelp[s])
	}
	fmt.Fprintf(w, `Run "switchboard-load <scenario> --help" for the flags of a scenario.
Exit status: 0 pass, 1 a guarantee failed (loss, duplicate, reordering, failed
connections), 2 bad usage or the run could not be set up.
`)
}

// flagSet reports whether the command line set the flag name.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
