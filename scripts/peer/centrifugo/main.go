// Command centrifugo is a load driver for Centrifugo v6, the peer that our performance
// issue compares Switchboard with. It runs the scenarios of cmd/switchboard-load (dm, fanout,
// conns) against Centrifugo's JSON client protocol and its server HTTP API:
//
//   - dm (the default): N users connect over WebSocket, each with its own HS256 JWT and
//     subscribed to its personal channel (with history and recovery); P publishers then send
//     message i to user i mod N with POST /api/publish, as fast as they can for a duration,
//     and every delivery is counted per user: lost, duplicated, out of order, latency.
//   - --conns: a connect storm of many connections from many dialers, each waiting until
//     its connect reply and its personal-channel subscription are confirmed.
//   - --fanout: a room. M members connect and subscribe from the client to one channel with
//     history and recovery (--room, in namespace "room"); P publishers post to it with
//     POST /api/publish, at --rate posts/s or as fast as they can, for a duration, and every
//     delivery is counted per member as cmd/switchboard-load's fanout does: lost,
//     duplicated, out of order (by publication offset), latency, time to the last member.
//
// With --pid and --redis-pid it reports the CPU and RSS of Centrifugo and of Redis.
// scripts/peer/centrifugo.sh builds Centrifugo, starts it with its own Redis and runs this.
//
//	go run ./scripts/peer/centrifugo --url http://127.0.0.1:8000 --secret S --api-key K
package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/lxzan/gws"
)

type config struct {
	url, secret, apiKey string
	channelPrefix       string // the personal channel of user u is channelPrefix+u
	clientSub           bool   // subscribe from the client instead of expecting a server-side subscription
	userPrefix          string
	users, publishers   int
	duration, grace     time.Duration
	payloadBytes        int
	conns               bool
	fanout              bool
	members             int
	room                string  // fanout: the room's channel
	rate                float64 // fanout: posts per second over all publishers; 0 = as fast as possible
	connCount, dialers  int
	hold, dialTimeout   time.Duration
	pid, redisPID       int
	jsonOut             bool
}

func main() {
	var c config
	flag.StringVar(&c.url, "url", "http://127.0.0.1:8000", "Centrifugo's base URL")
	flag.StringVar(&c.secret, "secret", "", "HMAC secret of the connection tokens (client.token.hmac_secret_key)")
	flag.StringVar(&c.apiKey, "api-key", "", "server API key (http_api.key)")
	flag.StringVar(&c.channelPrefix, "channel-prefix", "personal:#", `user u's personal channel is this prefix + u ("personal:#" is the server-side personal channel in namespace "personal")`)
	flag.BoolVar(&c.clientSub, "client-sub", false, "subscribe to the personal channel from the client (client.subscribe_to_user_personal_channel must then be off)")
	flag.StringVar(&c.userPrefix, "user-prefix", "", `prefix of the user ids; default "load-<random>" so that runs never share users`)
	flag.IntVar(&c.users, "users", 1000, "dm: users connected")
	flag.IntVar(&c.publishers, "publishers", 0, "dm, fanout: concurrent HTTP publishers (keep-alive connections); default 16 for dm, 4 for fanout (as cmd/switchboard-load)")
	flag.DurationVar(&c.duration, "duration", 10*time.Second, "dm, fanout: how long to publish")
	flag.DurationVar(&c.grace, "grace", 5*time.Second, "dm, fanout: how long to wait for the last deliveries")
	flag.IntVar(&c.payloadBytes, "payload-bytes", 100, "dm, fanout: size of each message's JSON data (cmd/switchboard-load's default)")
	flag.BoolVar(&c.conns, "conns", false, "run the connect storm instead of dm")
	flag.BoolVar(&c.fanout, "fanout", false, "run the room scenario instead of dm")
	flag.IntVar(&c.members, "members", 1000, "--fanout: room members, one connection each")
	flag.StringVar(&c.room, "room", "", `--fanout: the room's channel; default "room:<user-prefix>" (namespace "room" must allow client subscriptions)`)
	flag.Float64Var(&c.rate, "rate", 0, "--fanout: posts per second over all publishers; 0 = as fast as possible")
	flag.IntVar(&c.connCount, "conn-count", 10000, "--conns: connections to open")
	flag.IntVar(&c.dialers, "dialers", 400, "concurrent dialers")
	flag.DurationVar(&c.hold, "hold", 2*time.Second, "--conns: how long to hold the connections before measuring RSS and closing")
	flag.DurationVar(&c.dialTimeout, "dial-timeout", 30*time.Second, "how long one connection may take to be confirmed")
	flag.IntVar(&c.pid, "pid", 0, "Centrifugo's pid, to report its CPU and RSS")
	flag.IntVar(&c.redisPID, "redis-pid", 0, "Redis's pid, to report its CPU and RSS")
	flag.BoolVar(&c.jsonOut, "json", false, "print the result as JSON on stdout (a summary always goes to stderr)")
	flag.Parse()
	if c.secret == "" || (!c.conns && c.apiKey == "") {
		fatalf("--secret (and --api-key for dm and fanout) are required")
	}
	if c.conns && c.fanout {
		fatalf("--conns and --fanout are exclusive")
	}
	if c.publishers <= 0 {
		c.publishers = 16
		if c.fanout {
			c.publishers = 4
		}
	}
	if c.userPrefix == "" {
		b := make([]byte, 4)
		_, _ = rand.Read(b)
		c.userPrefix = "load-" + hex.EncodeToString(b)
	}
	need := c.users + c.publishers + 256
	switch {
	case c.conns:
		need = c.connCount + 256
	case c.fanout:
		need = c.members + c.publishers + 256
	}
	if lim := raiseFileLimit(); lim < uint64(need) {
		fatalf("need about %d file descriptors, the limit is %d", need, lim)
	}
	var res *result
	var err error
	switch {
	case c.conns:
		res, err = runConns(c)
	case c.fanout:
		res, err = runFanout(c)
	default:
		res, err = runDM(c)
	}
	if err != nil {
		fatalf("%v", err)
	}
	if c.jsonOut {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(res)
	}
	summary(os.Stderr, res)
	if res.Failed != "" {
		os.Exit(1)
	}
}

func fatalf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "centrifugo-load: "+format+"\n", a...)
	os.Exit(2)
}

func raiseFileLimit() uint64 {
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) != nil {
		return 0
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
		_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
	return lim.Cur
}

// ---- results ----

type result struct {
	Scenario string         `json:"scenario"`
	Mode     string         `json:"personal_channel,omitempty"` // dm, conns
	Room     string         `json:"room,omitempty"`             // fanout: its channel
	Params   *params        `json:"params,omitempty"`           // fanout
	Connect  connectReport  `json:"connect"`
	Send     *sendReport    `json:"send,omitempty"`
	Delivery *deliveryStats `json:"delivery,omitempty"`
	Server   *procReport    `json:"server,omitempty"`
	Redis    *procReport    `json:"redis,omitempty"`
	Tool     *procReport    `json:"tool,omitempty"` // this driver: is it the bottleneck?
	// OtherCores is the CPU (user+system, in cores) that processes other than Centrifugo,
	// Redis and this driver used during the measured phase: another benchmark on the
	// machine shows here, and makes the run suspect.
	OtherCores float64 `json:"other_cores"`
	Failed     string  `json:"failed,omitempty"`
}

// params are a fanout run's parameters, for the record.
type params struct {
	Members      int     `json:"members"`
	Publishers   int     `json:"publishers"`
	Rate         float64 `json:"rate"`
	DurationS    float64 `json:"duration_s"`
	PayloadBytes int     `json:"payload_bytes"`
}

type connectReport struct {
	Attempted int      `json:"attempted"`
	OK        int      `json:"ok"`
	Failed    int      `json:"failed"`
	Dropped   int      `json:"dropped"`
	Seconds   float64  `json:"seconds"`
	PerSecond float64  `json:"per_second"`
	Errors    []string `json:"errors,omitempty"`
}

type sendReport struct {
	Requests          int64    `json:"requests"`
	Accepted          int64    `json:"accepted"`
	Errors            int64    `json:"errors"`
	Seconds           float64  `json:"seconds"`
	AcceptedPerSecond float64  `json:"accepted_per_second"`
	TargetRate        float64  `json:"target_rate,omitempty"`
	ErrorSample       []string `json:"error_sample,omitempty"`
}

type deliveryStats struct {
	Expected   int64          `json:"expected"`
	Delivered  int64          `json:"delivered"`
	Lost       int64          `json:"lost"`
	Duplicated int64          `json:"duplicated"`
	OutOfOrder int64          `json:"out_of_order"`
	Unexpected int64          `json:"unexpected"`
	Seconds    float64        `json:"seconds"`
	PerSecond  float64        `json:"per_second"`
	Latency    latencySummary `json:"latency"`
	// Complete is the time from a post to its last member's delivery, and Incomplete the
	// posts some member never received (fanout).
	Complete   *latencySummary `json:"complete,omitempty"`
	Incomplete int64           `json:"incomplete,omitempty"`
}

type latencySummary struct {
	P50 float64 `json:"p50_ms"`
	P95 float64 `json:"p95_ms"`
	P99 float64 `json:"p99_ms"`
	Max float64 `json:"max_ms"`
}

type procReport struct {
	PID            int     `json:"pid"`
	CPUSeconds     float64 `json:"cpu_seconds"`
	CPUCores       float64 `json:"cpu_cores"`
	CPUPerOpMicros float64 `json:"cpu_us_per_op"`
	RSSBeforeMB    float64 `json:"rss_before_mb"`
	RSSAfterMB     float64 `json:"rss_after_mb"`
	RSSPerConnKB   float64 `json:"rss_per_conn_kb,omitempty"`
	Error          string  `json:"error,omitempty"`
}

func summary(w io.Writer, r *result) {
	c := r.Connect
	what := r.Mode
	if r.Room != "" {
		what = "room " + r.Room
	}
	fmt.Fprintf(w, "%s (%s): connected %d of %d in %.2fs (%.0f/s), %d failed, %d dropped\n",
		r.Scenario, what, c.OK, c.Attempted, c.Seconds, c.PerSecond, c.Failed, c.Dropped)
	for _, e := range c.Errors {
		fmt.Fprintf(w, "  connect error: %s\n", e)
	}
	if s := r.Send; s != nil {
		fmt.Fprintf(w, "sent %d, accepted %d (%.0f/s), errors %d\n", s.Requests, s.Accepted, s.AcceptedPerSecond, s.Errors)
		for _, e := range s.ErrorSample {
			fmt.Fprintf(w, "  publish error: %s\n", e)
		}
	}
	if d := r.Delivery; d != nil {
		fmt.Fprintf(w, "delivered %d (%.0f/s), lost %d, duplicated %d, out of order %d, unexpected %d; latency p50 %.3f ms, p95 %.3f ms, p99 %.3f ms, max %.3f ms\n",
			d.Delivered, d.PerSecond, d.Lost, d.Duplicated, d.OutOfOrder, d.Unexpected, d.Latency.P50, d.Latency.P95, d.Latency.P99, d.Latency.Max)
		if d.Complete != nil {
			fmt.Fprintf(w, "post to last member: p50 %.3f ms, p99 %.3f ms, max %.3f ms; %d posts incomplete\n", d.Complete.P50, d.Complete.P99, d.Complete.Max, d.Incomplete)
		}
	}
	for _, p := range []struct {
		name string
		r    *procReport
	}{{"centrifugo", r.Server}, {"redis", r.Redis}, {"driver", r.Tool}} {
		if p.r == nil {
			continue
		}
		if p.r.Error != "" {
			fmt.Fprintf(w, "%s: %s\n", p.name, p.r.Error)
			continue
		}
		fmt.Fprintf(w, "%s: %.2f CPU s, %.3f cores, %.1f µs CPU per op, RSS %.1f -> %.1f MB", p.name, p.r.CPUSeconds, p.r.CPUCores, p.r.CPUPerOpMicros, p.r.RSSBeforeMB, p.r.RSSAfterMB)
		if p.r.RSSPerConnKB != 0 {
			fmt.Fprintf(w, " (%.1f KB per connection)", p.r.RSSPerConnKB)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "other processes: %.3f cores during the measured phase\n", r.OtherCores)
	if r.Failed != "" {
		fmt.Fprintf(w, "FAILED: %s\n", r.Failed)
	}
}

// ---- /proc ----

const clockTicks = 100 // USER_HZ, the unit of /proc/<pid>/stat CPU times on Linux

type procSample struct {
	at  time.Time
	cpu time.Duration
	rss int64
	err error
}

func sampleProc(pid int) procSample {
	s := procSample{at: time.Now()}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		s.err = err
		return s
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		s.err = errors.New("malformed /proc/<pid>/stat")
		return s
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 22 { // f[0] is field 3 (state); utime and stime are fields 14 and 15
		s.err = errors.New("short /proc/<pid>/stat")
		return s
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		s.err = errors.New("malformed CPU times in /proc/<pid>/stat")
		return s
	}
	s.cpu = time.Duration(ut+st) * time.Second / clockTicks
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		s.err = err
		return s
	}
	for line := range strings.Lines(string(status)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			s.rss = kb * 1024
		}
	}
	return s
}

func procDiff(pid int, before, after procSample, ops int64) *procReport {
	r := &procReport{PID: pid}
	if err := errors.Join(before.err, after.err); err != nil {
		r.Error = err.Error()
		return r
	}
	cpu := after.cpu - before.cpu
	r.CPUSeconds = round(cpu.Seconds(), 3)
	if wall := after.at.Sub(before.at); wall > 0 {
		r.CPUCores = round(cpu.Seconds()/wall.Seconds(), 3)
	}
	if ops > 0 {
		r.CPUPerOpMicros = round(float64(cpu.Microseconds())/float64(ops), 1)
	}
	r.RSSBeforeMB = round(float64(before.rss)/(1<<20), 1)
	r.RSSAfterMB = round(float64(after.rss)/(1<<20), 1)
	return r
}

// sampleSelf samples this process, its CPU time from getrusage (finer than /proc's ticks).
func sampleSelf() procSample {
	s := sampleProc(os.Getpid())
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err == nil {
		s.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	return s
}

// machineCPU is the busy time of all CPUs (user, nice, system, irq and softirq: a task's
// stime includes the interrupts served while it ran) from the first line of /proc/stat.
func machineCPU() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := bytes.Cut(b, []byte{'\n'})
	f := strings.Fields(string(line))
	var ticks int64
	for i, v := range f {
		if i == 1 || i == 2 || i == 3 || i == 6 || i == 7 {
			n, _ := strconv.ParseInt(v, 10, 64)
			ticks += n
		}
	}
	return time.Duration(ticks) * time.Second / clockTicks
}

type procWatch struct {
	server, redis, self procSample
	machine             time.Duration
}

func watch(c config) procWatch {
	w := procWatch{self: sampleSelf(), machine: machineCPU()}
	if c.pid > 0 {
		w.server = sampleProc(c.pid)
	}
	if c.redisPID > 0 {
		w.redis = sampleProc(c.redisPID)
	}
	return w
}

func (w procWatch) fill(res *result, c config, ops int64) {
	now := watch(c)
	if c.pid > 0 {
		res.Server = procDiff(c.pid, w.server, now.server, ops)
	}
	if c.redisPID > 0 {
		res.Redis = procDiff(c.redisPID, w.redis, now.redis, ops)
	}
	res.Tool = procDiff(os.Getpid(), w.self, now.self, ops)
	others := (now.machine - w.machine).Seconds()
	for _, r := range []*procReport{res.Server, res.Redis, res.Tool} {
		if r != nil {
			others -= r.CPUSeconds
		}
	}
	if wall := now.self.at.Sub(w.self.at).Seconds(); wall > 0 {
		res.OtherCores = round(max(others, 0)/wall, 3)
	}
}

func round(v float64, digits int) float64 {
	p, _ := strconv.ParseFloat(strconv.FormatFloat(v, 'f', digits, 64), 64)
	return p
}

// ---- the Centrifugo client ----

// reply is one line of Centrifugo's JSON protocol: a reply to a command (id > 0), a push
// (id 0), or the server's ping, an empty object.
type reply struct {
	ID    uint32 `json:"id"`
	Error *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	Connect *struct {
		Client string                     `json:"client"`
		Subs   map[string]json.RawMessage `json:"subs"`
	} `json:"connect"`
	Subscribe json.RawMessage `json:"subscribe"`
	Push      *struct {
		Channel string `json:"channel"`
		Pub     *struct {
			Data   json.RawMessage `json:"data"`
			Offset uint64          `json:"offset"`
		} `json:"pub"`
		Disconnect json.RawMessage `json:"disconnect"`
	} `json:"push"`
}

// client is one connected user.
type client struct {
	gws.BuiltinEventHandler
	id, channel string
	clientSub   bool
	conn        *gws.Conn
	ready       chan error // one value: nil once connected and subscribed
	readyOnce   sync.Once
	closed      chan struct{}
	onPub       func(data []byte, offset uint64) // dm: called on the read goroutine
}

func (c *client) setReady(err error) {
	c.readyOnce.Do(func() { c.ready <- err })
}

func (c *client) OnClose(_ *gws.Conn, err error) {
	if err == nil {
		err = errors.New("closed")
	}
	c.setReady(fmt.Errorf("closed before confirmed: %w", err))
	close(c.closed)
}

func (c *client) OnMessage(socket *gws.Conn, m *gws.Message) {
	defer m.Close()
	for line := range bytes.SplitSeq(m.Bytes(), []byte{'\n'}) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		if bytes.Equal(line, []byte("{}")) { // the server's ping: answer with a pong
			_ = socket.WriteString("{}")
			continue
		}
		if data, offset, ok := fastPub(line, c.channel); ok {
			if c.onPub != nil {
				c.onPub(data, offset)
			}
			continue
		}
		var r reply
		if err := json.Unmarshal(line, &r); err != nil {
			c.setReady(fmt.Errorf("bad reply %q: %w", line, err))
			continue
		}
		switch {
		case r.Error != nil:
			c.setReady(fmt.Errorf("reply %d: error %d %s", r.ID, r.Error.Code, r.Error.Message))
		case r.ID == 1 && r.Connect != nil:
			if c.clientSub {
				sub := fmt.Sprintf(`{"id":2,"subscribe":{"channel":%q}}`, c.channel)
				if err := socket.WriteString(sub); err != nil {
					c.setReady(err)
				}
			} else if _, ok := r.Connect.Subs[c.channel]; ok {
				c.setReady(nil)
			} else {
				c.setReady(fmt.Errorf("connected without a subscription to %s", c.channel))
			}
		case r.ID == 2 && r.Subscribe != nil:
			c.setReady(nil)
		case r.Push != nil && r.Push.Pub != nil && r.Push.Channel == c.channel:
			if c.onPub != nil {
				c.onPub(r.Push.Pub.Data, r.Push.Pub.Offset)
			}
		}
	}
}

func (c config) token(user string) (string, error) {
	now := time.Now()
	claims := jwt.RegisteredClaims{Subject: user, IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour))}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(c.secret))
}

func (c config) wsURL() string {
	u := strings.TrimRight(c.url, "/")
	if rest, ok := strings.CutPrefix(u, "https://"); ok {
		return "wss://" + rest + "/connection/websocket"
	}
	return "ws://" + strings.TrimPrefix(u, "http://") + "/connection/websocket"
}

// dial connects user and waits until its connect reply and its personal-channel
// subscription are confirmed.
func dial(c config, user string, onPub func([]byte, uint64)) (*client, error) {
	tok, err := c.token(user)
	if err != nil {
		return nil, err
	}
	cl := &client{id: user, channel: c.channelPrefix + user, clientSub: c.clientSub, ready: make(chan error, 1), closed: make(chan struct{}), onPub: onPub}
	if c.fanout { // every member subscribes to the room from the client
		cl.channel, cl.clientSub = c.roomChannel(), true
	}
	conn, _, err := gws.NewClient(cl, &gws.ClientOption{
		Addr:             c.wsURL(),
		HandshakeTimeout: c.dialTimeout,
		ReadBufferSize:   4096,
		WriteBufferSize:  1024,
	})
	if err != nil {
		return nil, err
	}
	cl.conn = conn
	go conn.ReadLoop()
	if err := conn.WriteString(`{"id":1,"connect":{"token":"` + tok + `","name":"switchboard-peer"}}`); err != nil {
		_ = conn.NetConn().Close()
		return nil, err
	}
	select {
	case err = <-cl.ready:
	case <-time.After(c.dialTimeout):
		err = errors.New("not confirmed in time")
	}
	if err != nil {
		_ = conn.NetConn().Close()
		return nil, err
	}
	return cl, nil
}

// connectAll dials ids with dialers concurrent dialers; clients[i] is nil where it failed.
func connectAll(c config, ids []string, dialers int, onPub func(i int) func([]byte, uint64)) ([]*client, connectReport) {
	clients := make([]*client, len(ids))
	var next atomic.Int64
	var mu sync.Mutex
	errs := map[string]int{}
	start := time.Now()
	var wg sync.WaitGroup
	for range min(dialers, len(ids)) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(ids) {
					return
				}
				var cb func([]byte, uint64)
				if onPub != nil {
					cb = onPub(i)
				}
				cl, err := dial(c, ids[i], cb)
				if err != nil {
					mu.Lock()
					errs[err.Error()]++
					mu.Unlock()
					continue
				}
				clients[i] = cl
			}
		})
	}
	wg.Wait()
	el := time.Since(start)
	r := connectReport{Attempted: len(ids), Seconds: round(el.Seconds(), 3)}
	for _, cl := range clients {
		if cl != nil {
			r.OK++
		}
	}
	r.Failed = r.Attempted - r.OK
	r.PerSecond = round(float64(r.OK)/el.Seconds(), 1)
	for e, n := range errs {
		if len(r.Errors) < 10 {
			r.Errors = append(r.Errors, fmt.Sprintf("%d× %s", n, e))
		}
	}
	return clients, r
}

func closeAll(clients []*client) {
	for _, cl := range clients {
		if cl != nil {
			_ = cl.conn.WriteClose(1000, nil)
			_ = cl.conn.NetConn().Close()
		}
	}
}

func dropped(clients []*client) int {
	n := 0
	for _, cl := range clients {
		if cl == nil {
			continue
		}
		select {
		case <-cl.closed:
			n++
		default:
		}
	}
	return n
}

func userIDs(prefix, kind string, n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("%s-%s%07d", prefix, kind, i)
	}
	return ids
}

// roomChannel is the fanout room's channel.
func (c config) roomChannel() string {
	if c.room != "" {
		return c.room
	}
	return "room:" + c.userPrefix
}

func mode(c config) string {
	if c.clientSub {
		return "client-side subscription to " + c.channelPrefix + "<user>"
	}
	return "server-side personal channel " + c.channelPrefix + "<user>"
}

// ---- conns ----

func runConns(c config) (*result, error) {
	res := &result{Scenario: "conns", Mode: mode(c)}
	ids := userIDs(c.userPrefix, "c", c.connCount)
	before := watch(c)
	clients, cr := connectAll(c, ids, c.dialers, nil)
	defer closeAll(clients)
	res.Connect = cr
	// CPU over the storm, memory once the connections have settled.
	before.fill(res, c, int64(cr.OK))
	time.Sleep(c.hold)
	if c.pid > 0 && res.Server.Error == "" {
		held := sampleProc(c.pid)
		if held.err == nil {
			res.Server.RSSAfterMB = round(float64(held.rss)/(1<<20), 1)
			if cr.OK > 0 {
				res.Server.RSSPerConnKB = round(float64(held.rss-before.server.rss)/1024/float64(cr.OK), 1)
			}
		}
	}
	res.Connect.Dropped = dropped(clients)
	if cr.Failed > 0 || res.Connect.Dropped > 0 {
		res.Failed = fmt.Sprintf("%d connections failed, %d dropped", cr.Failed, res.Connect.Dropped)
	}
	return res, nil
}

// ---- dm ----

const (
	stAccepted = 1 << iota
	stReceived
)

type dmUser struct {
	mu         sync.Mutex
	seen       map[int64]uint8 // sequence number -> stAccepted|stReceived
	lastOffset uint64
	latencies  []int64 // ns; appended on the user's read goroutine only
}

type dmRun struct {
	c                      config
	ids                    []string
	users                  []*dmUser
	matched, delivered     atomic.Int64
	duplicated, outOfOrder atomic.Int64
	lastDelivery           atomic.Int64
	requests, accepted     atomic.Int64
	errors                 atomic.Int64
	errMu                  sync.Mutex
	errSample              map[string]int
}

func runDM(c config) (*result, error) {
	res := &result{Scenario: "dm", Mode: mode(c)}
	r := &dmRun{c: c, ids: userIDs(c.userPrefix, "d", c.users), errSample: map[string]int{}}
	r.users = make([]*dmUser, c.users)
	for i := range r.users {
		r.users[i] = &dmUser{seen: make(map[int64]uint8, 256)}
	}
	fmt.Fprintf(os.Stderr, "connecting %d users with %d dialers\n", c.users, c.dialers)
	clients, cr := connectAll(c, r.ids, c.dialers, func(i int) func([]byte, uint64) {
		return func(data []byte, offset uint64) { r.onPub(r.users[i], data, offset) }
	})
	res.Connect = cr
	if cr.Failed > 0 {
		closeAll(clients)
		res.Failed = fmt.Sprintf("%d of %d users failed to connect", cr.Failed, cr.Attempted)
		return res, nil
	}

	tr := &http.Transport{MaxIdleConns: c.publishers, MaxIdleConnsPerHost: c.publishers, MaxConnsPerHost: c.publishers, DisableCompression: true}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	api := strings.TrimRight(c.url, "/") + "/api/publish"

	procs := watch(c)
	start := time.Now()
	deadline := start.Add(c.duration)
	fmt.Fprintf(os.Stderr, "publishing with %d publishers for %s\n", c.publishers, c.duration)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range c.publishers {
		wg.Go(func() {
			body := make([]byte, 0, c.payloadBytes+128)
			for time.Now().Before(deadline) {
				seq := next.Add(1) - 1
				body = r.publish(hc, api, body[:0], seq)
			}
		})
	}
	wg.Wait()
	sendElapsed := time.Since(start)
	graceEnd := time.Now().Add(c.grace)
	for r.matched.Load() < r.accepted.Load() && time.Now().Before(graceEnd) {
		time.Sleep(10 * time.Millisecond)
	}
	procs.fill(res, c, r.delivered.Load())
	res.Connect.Dropped = dropped(clients)
	closeAll(clients)

	res.Send = &sendReport{
		Requests: r.requests.Load(), Accepted: r.accepted.Load(), Errors: r.errors.Load(),
		Seconds: round(sendElapsed.Seconds(), 3), AcceptedPerSecond: round(float64(r.accepted.Load())/sendElapsed.Seconds(), 1),
	}
	for e, n := range r.errSample {
		res.Send.ErrorSample = append(res.Send.ErrorSample, fmt.Sprintf("%d× %s", n, e))
	}
	d := &deliveryStats{
		Expected: r.accepted.Load(), Delivered: r.delivered.Load(),
		Lost: r.accepted.Load() - r.matched.Load(), Duplicated: r.duplicated.Load(), OutOfOrder: r.outOfOrder.Load(),
	}
	d.Unexpected = d.Delivered - d.Duplicated - r.matched.Load()
	if last := r.lastDelivery.Load(); last > 0 {
		el := time.Duration(last - start.UnixNano())
		d.Seconds = round(el.Seconds(), 3)
		d.PerSecond = round(float64(d.Delivered)/el.Seconds(), 1)
	}
	var lat []int64
	for _, u := range r.users {
		u.mu.Lock()
		lat = append(lat, u.latencies...)
		u.mu.Unlock()
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return round(float64(lat[min(len(lat)-1, int(p*float64(len(lat))))])/1e6, 3)
	}
	d.Latency = latencySummary{P50: pct(0.50), P95: pct(0.95), P99: pct(0.99), Max: pct(1)}
	res.Delivery = d
	var bad []string
	if d.Lost > 0 {
		bad = append(bad, fmt.Sprintf("%d lost", d.Lost))
	}
	if d.Duplicated > 0 {
		bad = append(bad, fmt.Sprintf("%d duplicated", d.Duplicated))
	}
	if d.Unexpected > 0 {
		bad = append(bad, fmt.Sprintf("%d unexpected", d.Unexpected))
	}
	if res.Connect.Dropped > 0 {
		bad = append(bad, fmt.Sprintf("%d connections dropped", res.Connect.Dropped))
	}
	res.Failed = strings.Join(bad, ", ")
	return res, nil
}

// publish sends message seq to user seq mod N and records whether Centrifugo accepted it.
func (r *dmRun) publish(hc *http.Client, api string, body []byte, seq int64) []byte {
	i := int(seq % int64(len(r.ids)))
	body = append(body, `{"channel":"`...)
	body = append(body, r.c.channelPrefix...)
	body = append(body, r.ids[i]...)
	body = append(body, `","data":`...)
	body = appendPayload(body, time.Now().UnixNano(), seq, r.c.payloadBytes)
	body = append(body, '}')
	r.requests.Add(1)
	req, err := http.NewRequest(http.MethodPost, api, bytes.NewReader(body))
	if err != nil {
		r.fail(err.Error())
		return body
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-API-Key", r.c.apiKey)
	resp, err := hc.Do(req)
	if err != nil {
		r.fail(err.Error())
		return body
	}
	answer, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		r.fail(fmt.Sprintf("http %d %s", resp.StatusCode, bytes.TrimSpace(answer)))
		return body
	}
	var a struct {
		Error  json.RawMessage `json:"error"`
		Result *struct {
			Offset uint64 `json:"offset"`
		} `json:"result"`
	}
	if err := json.Unmarshal(answer, &a); err != nil || a.Error != nil || a.Result == nil {
		r.fail(fmt.Sprintf("answer %s", bytes.TrimSpace(answer)))
		return body
	}
	r.accepted.Add(1)
	u := r.users[i]
	u.mu.Lock()
	st := u.seen[seq]
	u.seen[seq] = st | stAccepted
	u.mu.Unlock()
	if st&stReceived != 0 {
		r.matched.Add(1)
	}
	return body
}

func (r *dmRun) fail(e string) {
	r.errors.Add(1)
	r.errMu.Lock()
	if len(r.errSample) < 10 || r.errSample[e] > 0 {
		r.errSample[e]++
	}
	r.errMu.Unlock()
}

// onPub counts one delivery to u; it runs on u's read goroutine.
func (r *dmRun) onPub(u *dmUser, data []byte, offset uint64) {
	now := time.Now().UnixNano()
	sent, seq, ok := parsePayload(data)
	if !ok {
		return
	}
	r.delivered.Add(1)
	r.lastDelivery.Store(now)
	u.mu.Lock()
	u.latencies = append(u.latencies, now-sent)
	if offset <= u.lastOffset {
		r.outOfOrder.Add(1)
	}
	u.lastOffset = max(u.lastOffset, offset)
	st := u.seen[seq]
	u.seen[seq] = st | stReceived
	u.mu.Unlock()
	switch {
	case st&stReceived != 0:
		r.duplicated.Add(1)
	case st&stAccepted != 0:
		r.matched.Add(1)
	}
}

// Payloads are {"t":<send time, unix ns>,"s":<sequence>,"p":"<padding>"}, as in
// cmd/switchboard-load, padded to about size bytes.
func appendPayload(b []byte, sent, seq int64, size int) []byte {
	start := len(b)
	b = append(b, `{"t":`...)
	b = strconv.AppendInt(b, sent, 10)
	b = append(b, `,"s":`...)
	b = strconv.AppendInt(b, seq, 10)
	if pad := size - (len(b) - start) - len(`,"p":"`) - 2; pad > 0 {
		b = append(b, `,"p":"`...)
		for range pad {
			b = append(b, 'x')
		}
		b = append(b, '"')
	}
	return append(b, '}')
}

func parsePayload(b []byte) (sent, seq int64, ok bool) {
	var p struct {
		T *int64 `json:"t"`
		S *int64 `json:"s"`
	}
	if rest, found := bytes.CutPrefix(b, []byte(`{"t":`)); found {
		if i := bytes.IndexByte(rest, ','); i > 0 {
			if t, err := strconv.ParseInt(string(rest[:i]), 10, 64); err == nil {
				if rest, found = bytes.CutPrefix(rest[i:], []byte(`,"s":`)); found {
					j := bytes.IndexAny(rest, ",}")
					if s, err := strconv.ParseInt(string(rest[:max(j, 0)]), 10, 64); j > 0 && err == nil {
						return t, s, true
					}
				}
			}
		}
	}
	if json.Unmarshal(b, &p) != nil || p.T == nil || p.S == nil {
		return 0, 0, false
	}
	return *p.T, *p.S, true
}
