package service_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard-dev/switchboard/internal/redistest"
	"github.com/switchboard-dev/switchboard/internal/wsclient"
	"github.com/switchboard-dev/switchboard/service"
	"github.com/switchboard-dev/switchboard/subscriptions"
)

// redisOf opens a client of its own on a backend's Redis, as main gives one to each part.
func redisOf(t testing.TB, be backend) redis.UniversalClient {
	t.Helper()
	rdb := be.open(t, false)
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// withLimits gives a node per-user limits kept in the backend's Redis under its prefix.
func withLimits(t testing.TB, be backend, cfg service.LimiterConfig) func(*nodeOptions) {
	return func(o *nodeOptions) {
		cfg.Prefix = be.prefix
		l, err := service.NewLimiter(redisOf(t, be), cfg)
		if err != nil {
			t.Fatal(err)
		}
		o.service.Limiter = l
	}
}

// perSecond is a limit of rate a second in bursts of burst.
func perSecond(rate, burst int) service.Limit {
	return service.Limit{Rate: rate, Per: time.Second, Burst: burst}
}

// loose is a limit no test reaches.
var loose = perSecond(100000, 100000)

// streamKey is user's stream under prefix: its channel's name with "stream" for "user".
func streamKey(prefix, user string) string {
	return strings.Replace(subscriptions.ChannelName(prefix, user), "}:user:", "}:stream:", 1)
}

// roomKey is room's member set under prefix.
func roomKey(prefix, room string) string { return "{" + prefix + ":room:" + room + "}:members" }

// limitedTotal reads switchboard_limited_total{limit} from a node's /metrics.
func limitedTotal(t *testing.T, n *node, limit string) int {
	t.Helper()
	r := do(t, "GET", n.base+"/metrics", "", nil)
	sc := bufio.NewScanner(strings.NewReader(string(r.body)))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), `switchboard_limited_total{limit="`+limit+`"} `); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return int(f)
		}
	}
	return 0
}

// retryAfterMS returns an error frame's retry_after_ms.
func retryAfterMS(t *testing.T, f wsclient.Frame) int64 {
	t.Helper()
	var v struct {
		RetryAfterMS int64 `json:"retry_after_ms"`
	}
	if err := json.Unmarshal(f.Raw, &v); err != nil {
		t.Fatal(err)
	}
	return v.RetryAfterMS
}

// floodResult is what a reconnecting flood achieved.
type floodResult struct {
	accepted, refused []string // targets, in order
	elapsed           time.Duration
}

// reconnectFlood is the attack of issue 13: one user that opens a new connection after
// every perConn frames, alternating between nodes, and sends frame(i) as fast as it can for
// d, reading every answer. Each frame's target is target(i). On a machine too busy to reach
// the limit within d it goes on until 10 frames were refused (at most a minute), so that
// the test never depends on the machine's speed.
func reconnectFlood(t *testing.T, nodes []*node, user string, perConn int, d time.Duration, frame func(i int) string, target func(i int) string) floodResult {
	t.Helper()
	var res floodResult
	start := time.Now()
	for i, conn := 0, 0; time.Since(start) < d || len(res.refused) < 10; conn++ {
		if time.Since(start) > time.Minute {
			t.Fatalf("after a minute: %d accepted, %d refused", len(res.accepted), len(res.refused))
		}
		c, _ := connect(t, nodes[conn%len(nodes)], user)
		first := i
		for range perConn {
			must(t, c.SendRaw([]byte(frame(i))))
			i++
		}
		for j := first; j < i; j++ {
			f, err := c.NextWithin(10 * time.Second)
			if err != nil {
				t.Fatalf("answer to frame %d: %v", j, err)
			}
			if f.Type == "message" && f.To != "" {
				j-- // the sender's copy of an accepted DM, not an answer
				continue
			}
			switch {
			case f.Type == "ack" && f.Ref == strconv.Itoa(j):
				res.accepted = append(res.accepted, target(j))
			case f.Type == "error" && f.Ref == strconv.Itoa(j) && f.Code == "rate_limited":
				if ms := retryAfterMS(t, f); ms <= 0 {
					t.Fatalf("rate_limited without a retry_after_ms: %s", f.Raw)
				}
				res.refused = append(res.refused, target(j))
			default:
				t.Fatalf("answer to frame %d: %s", j, f.Raw)
			}
		}
		c.Close()
	}
	res.elapsed = time.Since(start)
	return res
}

// checkWithinLimit fails unless the accepted count is at most burst + rate × elapsed (+2 for
// the clocks of Redis and the test) and the flood was refused at all.
func checkWithinLimit(t *testing.T, what string, res floodResult, lim service.Limit) {
	t.Helper()
	bound := float64(lim.Burst) + float64(lim.Rate)*res.elapsed.Seconds()/lim.Per.Seconds() + 2
	t.Logf("%s: %d accepted, %d refused in %v (bound %.0f)", what, len(res.accepted), len(res.refused), res.elapsed.Round(time.Millisecond), bound)
	if float64(len(res.accepted)) > bound {
		t.Fatalf("%s: %d accepted in %v, more than burst %d + %d/%v", what, len(res.accepted), res.elapsed, lim.Burst, lim.Rate, lim.Per)
	}
	if len(res.accepted) < lim.Burst || len(res.refused) == 0 {
		t.Fatalf("%s: %d accepted and %d refused: the flood did not reach the limit", what, len(res.accepted), len(res.refused))
	}
}

func testReconnectFloodOfDMsIsLimitedPerUserAcrossNodes(t *testing.T, be backend) {
	sends := perSecond(5, 20) // low, so that even a busy machine floods past it
	limits := withLimits(t, be, service.LimiterConfig{Sends: sends, UserConns: loose, IPConns: loose})
	a := startNode(t, be, "a", limits)
	b := startNode(t, be, "b", limits)
	p := startBystander(t, a, b, "bystander", nil)

	rdb := redisOf(t, be)
	ctx := context.Background()
	before := usedMemory(t, rdb)
	ghost := func(i int) string { return "ghost-" + strconv.Itoa(i) }
	res := reconnectFlood(t, []*node{a, b}, "flooder", 10, 3*time.Second,
		func(i int) string {
			return `{"type":"send","to":"` + ghost(i) + `","data":{"n":` + strconv.Itoa(i) + `},"ref":"` + strconv.Itoa(i) + `"}`
		}, ghost)
	checkWithinLimit(t, "DMs", res, sends)
	if before > 0 {
		t.Logf("Redis used_memory grew %d KB for %d accepted DMs to made-up users", (usedMemory(t, rdb)-before)/1024, len(res.accepted))
	}

	for _, u := range res.refused {
		if n, err := rdb.Exists(ctx, streamKey(be.prefix, u)).Result(); err != nil || n != 0 {
			t.Fatalf("a refused DM to %s was stored (exists %d, %v)", u, n, err)
		}
	}
	for _, u := range res.accepted {
		if n, err := rdb.Exists(ctx, streamKey(be.prefix, u)).Result(); err != nil || n != 1 {
			t.Fatalf("an accepted DM to %s was not stored (exists %d, %v)", u, n, err)
		}
	}
	if got := limitedTotal(t, a, "send") + limitedTotal(t, b, "send"); got != len(res.refused) {
		t.Fatalf("switchboard_limited_total{limit=send} on both nodes: %d, want %d", got, len(res.refused))
	}
	p.Stop()
}

func testReconnectFloodOfJoinsIsLimitedPerUserAcrossNodes(t *testing.T, be backend) {
	joins := perSecond(5, 20)
	limits := withLimits(t, be, service.LimiterConfig{Joins: joins, UserConns: loose, IPConns: loose})
	a := startNode(t, be, "a", limits)
	b := startNode(t, be, "b", limits)
	p := startBystander(t, b, a, "bystander", nil)

	room := func(i int) string { return "made-up-" + strconv.Itoa(i) }
	res := reconnectFlood(t, []*node{a, b}, "joiner", 10, 3*time.Second,
		func(i int) string { return `{"type":"join","room":"` + room(i) + `","ref":"` + strconv.Itoa(i) + `"}` }, room)
	checkWithinLimit(t, "joins", res, joins)

	rdb := redisOf(t, be)
	ctx := context.Background()
	for _, r := range res.refused {
		if n, err := rdb.Exists(ctx, roomKey(be.prefix, r)).Result(); err != nil || n != 0 {
			t.Fatalf("a refused join created room %s (exists %d, %v)", r, n, err)
		}
	}
	r := do(t, "GET", a.base+"/v1/users/joiner/rooms", "", nil)
	var rooms struct{ Rooms []string }
	must(t, json.Unmarshal(r.body, &rooms))
	if len(rooms.Rooms) != len(res.accepted) {
		t.Fatalf("the joiner is in %d rooms, %d joins were accepted", len(rooms.Rooms), len(res.accepted))
	}
	if got := limitedTotal(t, a, "join") + limitedTotal(t, b, "join"); got != len(res.refused) {
		t.Fatalf("switchboard_limited_total{limit=join} on both nodes: %d, want %d", got, len(res.refused))
	}
	p.Stop()
}

// dialRefused dials and expects a 429 rate_limited refusal with a Retry-After.
func dialRefused(t *testing.T, n *node, query string, header http.Header) {
	t.Helper()
	c, err := wsclient.Dial(n.wsURL(query), wsclient.Options{Header: header})
	if err == nil {
		c.Close()
		t.Fatalf("%s on %s: connected, want a 429", query, n.name)
	}
	var refused *wsclient.ErrRefused
	if !errors.As(err, &refused) || refused.Status != http.StatusTooManyRequests || !strings.Contains(refused.Body, `"rate_limited"`) {
		t.Fatalf("%s on %s: %v, want a 429 rate_limited refusal", query, n.name, err)
	}
}

// dialOK dials and reads the welcome.
func dialOK(t *testing.T, n *node, query string, header http.Header) *wsclient.Conn {
	t.Helper()
	c, err := wsclient.Dial(n.wsURL(query), wsclient.Options{Header: header})
	if err != nil {
		t.Fatalf("%s on %s: %v", query, n.name, err)
	}
	t.Cleanup(c.Close)
	next(t, c, "welcome")
	return c
}

func TestNewConnectionsAreLimitedPerUserAndPerIPAcrossNodes(t *testing.T) {
	be := singleRedis(t)
	perMinute := func(burst int) service.Limit { return service.Limit{Rate: 1, Per: time.Minute, Burst: burst} }

	t.Run("per user: the fourth connection within the burst of 3 is refused, on either node", func(t *testing.T) {
		limits := withLimits(t, be, service.LimiterConfig{UserConns: perMinute(3), IPConns: loose})
		a := startNode(t, be, "a", limits)
		b := startNode(t, be, "b", limits)
		p := startBystander(t, a, b, "bystander", nil)
		for i := range 3 {
			c := dialOK(t, []*node{a, b}[i%2], "user=many", nil)
			c.Close() // closing frees nothing: the limit is on new connections
		}
		dialRefused(t, a, "user=many", nil)
		dialRefused(t, b, "user=many", nil)
		dialOK(t, b, "user=other", nil) // another user has a budget of its own
		if got := limitedTotal(t, a, "user_conn") + limitedTotal(t, b, "user_conn"); got != 2 {
			t.Fatalf("switchboard_limited_total{limit=user_conn}: %d, want 2", got)
		}
		p.Stop()
	})

	t.Run("per IP: the sixth connection from one address within the burst of 5 is refused, whoever it is", func(t *testing.T) {
		be := singleRedis(t)
		limits := withLimits(t, be, service.LimiterConfig{UserConns: loose, IPConns: perMinute(5)})
		a := startNode(t, be, "a", limits)
		b := startNode(t, be, "b", limits)
		p := startBystander(t, a, b, "bystander", nil) // the first of the five
		for i := range 4 {
			dialOK(t, []*node{a, b}[i%2], "user=u"+strconv.Itoa(i), nil)
		}
		dialRefused(t, a, "user=u9", nil)
		// Without trusted proxies X-Forwarded-For is the client's word, and ignored.
		dialRefused(t, b, "user=u9", http.Header{"X-Forwarded-For": {"203.0.113.7"}})
		if got := limitedTotal(t, a, "ip_conn") + limitedTotal(t, b, "ip_conn"); got != 2 {
			t.Fatalf("switchboard_limited_total{limit=ip_conn}: %d, want 2", got)
		}
		p.Stop()
	})

	t.Run("behind a trusted proxy each forwarded client has a budget of its own", func(t *testing.T) {
		be := singleRedis(t)
		a := startNode(t, be, "a", withLimits(t, be, service.LimiterConfig{UserConns: loose, IPConns: perMinute(1), TrustedProxies: []string{"127.0.0.1/32"}}))
		from := func(ip string) http.Header { return http.Header{"X-Forwarded-For": {ip}} }
		dialOK(t, a, "user=x", from("203.0.113.7"))
		dialRefused(t, a, "user=y", from("203.0.113.7"))
		dialOK(t, a, "user=y", from("203.0.113.8"))
		// IPv6 counts per /64: another address in it shares the budget.
		dialOK(t, a, "user=z", from("2001:db8:1:2::1"))
		dialRefused(t, a, "user=z", from("2001:db8:1:2::ffff"))
	})
}

func TestRefusedConnectionCarriesRetryAfter(t *testing.T) {
	be := singleRedis(t)
	a := startNode(t, be, "a", withLimits(t, be, service.LimiterConfig{UserConns: service.Limit{Rate: 1, Per: time.Minute, Burst: 1}, IPConns: loose}))
	dialOK(t, a, "user=once", nil)
	req, _ := http.NewRequest("GET", a.wsURL("user=once"), nil)
	req.URL.Scheme = "http"
	for k, v := range map[string]string{"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="} {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	ra, _ := strconv.Atoi(res.Header.Get("Retry-After"))
	if res.StatusCode != http.StatusTooManyRequests || ra < 1 || ra > 60 {
		t.Fatalf("status %d, Retry-After %q: want 429 and 1..60 s", res.StatusCode, res.Header.Get("Retry-After"))
	}
}

func TestConnectionKeptRefusedByItsUsersLimitIsClosedWith1008(t *testing.T) {
	be := singleRedis(t)
	a := startNode(t, be, "a", withLimits(t, be, service.LimiterConfig{Sends: service.Limit{Rate: 1, Per: time.Minute, Burst: 1}}),
		func(o *nodeOptions) { o.service.FrameBurst, o.service.FrameRate = 5, 10000 }) // the frame limit stays out of it
	p := startBystander(t, a, a, "bystander", nil)
	c, _ := connect(t, a, "pest")
	ack(t, c, `{"type":"send","to":"someone","data":1}`)
	for i := range 5 {
		must(t, c.SendRaw([]byte(`{"type":"send","to":"someone","data":2}`)))
		if e := next(t, c, "error"); e.Code != "rate_limited" {
			t.Fatalf("refusal %d: %s", i, e.Raw)
		}
	}
	must(t, c.SendRaw([]byte(`{"type":"send","to":"someone","data":3}`)))
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("a connection refused past FrameBurst in a row was not closed")
	}
	if code, _ := c.CloseCode(); code != 1008 {
		t.Fatalf("close code %d, want 1008", code)
	}
	r := do(t, "GET", a.base+"/metrics", "", nil)
	if !strings.Contains(string(r.body), `switchboard_connections_closed_total{reason="rate_limited"} 1`+"\n") {
		t.Fatal("the 1008 close is not counted once in switchboard_connections_closed_total")
	}
	p.Stop()
}

func TestUserLimitFailsClosedWhenItsRedisIsUnreachable(t *testing.T) {
	be := singleRedis(t)
	limits := redistest.Start(t) // the limits' own Redis, stopped below
	a := startNode(t, be, "a", withLimits(t, onRedis(limits), service.LimiterConfig{}))
	c, _ := connect(t, a, "alice")
	limits.Stop()
	must(t, c.SendRaw([]byte(`{"type":"send","to":"nobody","data":1,"ref":"x"}`)))
	if e := next(t, c, "error"); e.Code != "unavailable" || e.Ref != "x" {
		t.Fatalf("send without its limit's Redis: %s, want unavailable", e.Raw)
	}
	if n, _ := redisOf(t, be).Exists(context.Background(), streamKey("t", "nobody")).Result(); n != 0 {
		t.Fatal("a send refused as unavailable was stored")
	}
	_, err := wsclient.Dial(a.wsURL("user=bob"), wsclient.Options{})
	var refused *wsclient.ErrRefused
	if !errors.As(err, &refused) || refused.Status != http.StatusServiceUnavailable {
		t.Fatalf("connect without the limits' Redis: %v, want 503", err)
	}
}

func TestParseLimit(t *testing.T) {
	cases := []struct {
		in   string
		want service.Limit
		ok   bool
	}{
		{"50/s,100", service.Limit{Rate: 50, Per: time.Second, Burst: 100}, true},
		{"600/m", service.Limit{Rate: 600, Per: time.Minute, Burst: 600}, true},
		{"1/10s,20", service.Limit{Rate: 1, Per: 10 * time.Second, Burst: 20}, true},
		{"5/h,1", service.Limit{Rate: 5, Per: time.Hour, Burst: 1}, true},
		{"off", service.Limit{Rate: -1}, true},
		{"", service.Limit{}, false},
		{"50", service.Limit{}, false},
		{"0/s", service.Limit{}, false},
		{"-1/s", service.Limit{}, false},
		{"50/s,0", service.Limit{}, false},
		{"50/fortnight", service.Limit{}, false},
		{"50/0s", service.Limit{}, false},
		{"x/s,1", service.Limit{}, false},
	}
	for _, tc := range cases {
		name := fmt.Sprintf("%q is refused", tc.in)
		if tc.ok {
			name = fmt.Sprintf("%q reads as %v", tc.in, tc.want)
		}
		t.Run(name, func(t *testing.T) {
			got, err := service.ParseLimit(tc.in)
			if (err == nil) != tc.ok || got != tc.want {
				t.Fatalf("ParseLimit(%q) = %v, %v", tc.in, got, err)
			}
			if tc.ok && tc.in != "off" {
				if again, _ := service.ParseLimit(got.String()); again != got {
					t.Fatalf("%v does not read back from its String %q", got, got.String())
				}
			}
		})
	}
}

// BenchmarkClientSendWithUserLimit measures what the per-user send limit costs a client
// send: one connection sends DMs one at a time, each waiting for its ack, without the
// limiter and with it (a limit never reached, so every send takes the Redis round trip of
// the check and none is refused).
func BenchmarkClientSendWithUserLimit(b *testing.B) {
	for _, bc := range []struct {
		name   string
		limits bool
	}{{"no user limit", false}, {"user limit", true}} {
		b.Run(bc.name, func(b *testing.B) {
			srv := redistest.Start(b)
			be := onRedis(srv)
			var mods []func(*nodeOptions)
			mods = append(mods, func(o *nodeOptions) { o.service.FrameRate, o.service.FrameBurst = 1e9, 1e9 })
			if bc.limits {
				mods = append(mods, withLimits(b, be, service.LimiterConfig{Sends: loose}))
			}
			n := startNode(b, be, "a", mods...)
			c, err := wsclient.Dial(n.wsURL("user=sender"), wsclient.Options{})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(c.Close)
			if f, err := c.NextWithin(10 * time.Second); err != nil || f.Type != "welcome" {
				b.Fatal(f, err)
			}
			frame := []byte(`{"type":"send","to":"receiver","data":{"text":"hello"}}`)
			b.ResetTimer()
			for range b.N {
				if err := c.SendRaw(frame); err != nil {
					b.Fatal(err)
				}
				if f, err := c.NextWithin(10 * time.Second); err != nil || f.Type != "ack" {
					b.Fatal(f, err)
				}
			}
		})
	}
}
