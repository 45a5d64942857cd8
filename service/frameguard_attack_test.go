package service_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard-dev/switchboard/events"
	"github.com/switchboard-dev/switchboard/internal/testutil"
	"github.com/switchboard-dev/switchboard/service"
)

// rawWS is a WebSocket upgraded by hand on a plain TCP connection, so that a test can
// write any bytes at all after a real upgrade.
type rawWS struct {
	conn net.Conn
	br   *bufio.Reader
}

// rawConnect upgrades a TCP connection to n as user (dev auth).
func rawConnect(t *testing.T, n *node, user string) *rawWS {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(n.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	_, err = conn.Write([]byte("GET /ws?user=" + user + " HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade as %s: %v %v", user, resp, err)
	}
	return &rawWS{conn: conn, br: br}
}

// frame reads one server frame (servers do not mask).
func (r *rawWS) frame() (op byte, payload []byte, err error) {
	var h [2]byte
	if _, err := io.ReadFull(r.br, h[:]); err != nil {
		return 0, nil, err
	}
	n := uint64(h[1] & 0x7F)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(r.br, b[:]); err != nil {
			return 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(r.br, b[:]); err != nil {
			return 0, nil, err
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	payload = make([]byte, n)
	_, err = io.ReadFull(r.br, payload)
	return h[0] & 0x0F, payload, err
}

// welcome reads frames until the welcome.
func (r *rawWS) welcome(t *testing.T) {
	t.Helper()
	for {
		op, p, err := r.frame()
		if err != nil || op == 0x8 {
			t.Fatalf("waiting for the welcome: op %d %q %v", op, p, err)
		}
		if strings.Contains(string(p), `"type":"welcome"`) {
			return
		}
	}
}

// closed reads frames until the connection ends and returns the close code the server
// sent (0 if it ended without one) and the error frames' codes it saw before.
func (r *rawWS) closed() (code uint16, errorCodes []string) {
	for {
		op, p, err := r.frame()
		if err != nil {
			return 0, errorCodes
		}
		switch op {
		case 0x8:
			if len(p) >= 2 {
				return binary.BigEndian.Uint16(p), errorCodes
			}
			return 0, errorCodes
		case 0x1:
			var f struct{ Type, Code string }
			if json.Unmarshal(p, &f) == nil && f.Type == "error" {
				errorCodes = append(errorCodes, f.Code)
			}
		}
	}
}

func (r *rawWS) write(t *testing.T, frames ...[]byte) {
	t.Helper()
	if _, err := r.conn.Write(joinFrames(frames...)); err != nil {
		t.Fatalf("write: %v", err)
	}
}

func joinFrames(frames ...[]byte) []byte {
	var b []byte
	for _, f := range frames {
		b = append(b, f...)
	}
	return b
}

func repeatFrame(f []byte, n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = f
	}
	return out
}

// closedTotal returns switchboard_connections_closed_total for reason (0 if not yet seen).
func closedTotal(t *testing.T, n *node, reason string) float64 {
	t.Helper()
	r := do(t, "GET", n.base+"/metrics", "", nil)
	sample := `switchboard_connections_closed_total{reason="` + reason + `"} `
	for _, line := range strings.Split(string(r.body), "\n") {
		if v, ok := strings.CutPrefix(line, sample); ok {
			var f float64
			_, _ = fmt.Sscan(v, &f)
			return f
		}
	}
	return 0
}

// Before the frame guard, the first case (the exact bytes from issue 13) made gws panic
// slicing with a negative length on the read loop's goroutine, which killed the whole
// test process; the others were refused by gws with assorted codes, or not at all.
func TestFramesThatBreakRFC6455CloseOnlyTheirConnectionWith1002(t *testing.T) {
	srv, _ := startRedis(t)
	n := startNode(t, onRedis(srv), "a")
	p := startBystander(t, n, n, "bystander", nil)
	text := service.WireFrame(0x81, true, 0, -1, []byte(`{"type":"nope"}`))
	cases := []struct {
		name  string
		bytes []byte
	}{
		{"the 14 bytes of issue 13: a 64-bit length with its top bit set", []byte{0x81, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0x05, 0x01, 0x02, 0x03, 0x04}},
		{"a binary frame declaring 2^63 bytes", service.WireFrame(0x82, true, 64, -1<<63, nil)},
		{"a length of 5 in the 16-bit form", service.WireFrame(0x81, true, 16, -1, []byte("hello"))},
		{"a length of 5 in the 64-bit form", service.WireFrame(0x81, true, 64, -1, []byte("hello"))},
		{"RSV1 set with no extension negotiated", service.WireFrame(0xC1, true, 0, -1, []byte("{}"))},
		{"RSV2 set", service.WireFrame(0xA1, true, 0, -1, []byte("{}"))},
		{"RSV3 set", service.WireFrame(0x91, true, 0, -1, []byte("{}"))},
		{"reserved data opcode 3", service.WireFrame(0x83, true, 0, -1, nil)},
		{"reserved control opcode 0xB", service.WireFrame(0x8B, true, 0, -1, nil)},
		{"an unmasked text frame", service.WireFrame(0x81, false, 0, -1, []byte(`{"type":"nope"}`))},
		{"a ping without FIN", service.WireFrame(0x09, true, 0, -1, []byte("x"))},
		{"a ping of 126 bytes", service.WireFrame(0x89, true, 0, -1, make([]byte, 126))},
		{"a continuation frame with no message begun", service.WireFrame(0x80, true, 0, -1, []byte("{}"))},
		{"a text frame inside a fragmented message", joinFrames(service.WireFrame(0x01, true, 0, -1, []byte("{")), text)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := n.hub.Stats().Connections
			c := rawConnect(t, n, "mallory")
			c.welcome(t)
			c.write(t, tc.bytes)
			if code, _ := c.closed(); code != 1002 {
				t.Fatalf("close code %d, want 1002", code)
			}
			testutil.WaitFor(t, 10*time.Second, func() bool { return n.hub.Stats().Connections == before }, "the node to release the connection")
		})
	}
	// The node still serves: a new connection works, and the bystander lost nothing.
	c, _ := connect(t, n, "after")
	id := sendDM(t, n, "after", `"still up"`)
	if m := next(t, c, "message"); m.ID != id {
		t.Fatalf("got %s", m.Raw)
	}
	if got := closedTotal(t, n, "protocol_error"); got != float64(len(cases)) {
		t.Fatalf("closed_total{protocol_error} = %v, want %d", got, len(cases))
	}
	p.Stop()
}

// presenceOf reads a user's counted connections from Redis, as the node's events queue
// keeps them.
func presenceOf(t *testing.T, redisURL, user string) int {
	t.Helper()
	opts, err := redis.ParseURL(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	opts.MaxRetries = -1
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	q, err := events.New(rdb, events.Config{Node: "probe", Prefix: "t"})
	if err != nil {
		t.Fatal(err)
	}
	online, err := q.Presence().Online(context.Background(), user)
	if err != nil {
		t.Fatal(err)
	}
	return online
}

// A panic on any of a connection's goroutines closes that connection with 1011 and runs
// its cleanup once; the node keeps serving. Before: a panic in OnPing, OnPong, OnClose
// or a drain job ended the test process; one in OnMessage was logged by gws.Recovery
// and the connection carried on.
func TestAPanicOnAConnectionClosesOnlyThatConnection(t *testing.T) {
	srv, _ := startRedis(t)
	n := startNode(t, onRedis(srv), "a")
	var mu sync.Mutex
	uncounted := map[string]int{}
	fired := map[string]bool{}
	service.SetPanicHook(n.srv, func(user, where string) {
		mu.Lock()
		defer mu.Unlock()
		if where == "uncount" {
			uncounted[user]++
		}
		if user == "p-"+strings.ToLower(where) && !fired[user] {
			fired[user] = true // once: a cleanup step that failed is not the next one's fault
			panic("a test panic in " + where)
		}
	})
	p := startBystander(t, n, n, "bystander", nil)
	cases := []struct {
		where   string
		trigger []byte // written after the upgrade
		code    uint16 // the close code the client sees; 0: the client closes first
		counted bool   // whether presence counted the connection before the panic
	}{
		{"OnOpen", nil, 1011, false},
		{"drain", nil, 1011, true}, // the welcome's drain job
		{"OnMessage", service.WireFrame(0x81, true, 0, -1, []byte(`{"type":"nope"}`)), 1011, true},
		{"OnPing", service.WireFrame(0x89, true, 0, -1, []byte("x")), 1011, true},
		{"OnPong", service.WireFrame(0x8A, true, 0, -1, []byte("x")), 1011, true},
		{"OnClose", service.WireFrame(0x88, true, 0, -1, []byte{0x03, 0xE8}), 0, true},
		{"unsubscribed", service.WireFrame(0x88, true, 0, -1, []byte{0x03, 0xE8}), 0, true},
	}
	for _, tc := range cases {
		t.Run("a panic in "+tc.where, func(t *testing.T) {
			user := "p-" + strings.ToLower(tc.where)
			before := n.hub.Stats().Connections
			c := rawConnect(t, n, user)
			if tc.trigger != nil {
				c.welcome(t)
				c.write(t, tc.trigger)
			}
			code, _ := c.closed()
			if tc.code != 0 && code != tc.code {
				t.Fatalf("close code %d, want %d", code, tc.code)
			}
			testutil.WaitFor(t, 10*time.Second, func() bool { return n.hub.Stats().Connections == before }, "the node to release the connection")
			testutil.WaitFor(t, 10*time.Second, func() bool { return n.hub.LocalConnections(user) == 0 }, "the user to be unregistered")
			testutil.WaitFor(t, 10*time.Second, func() bool { return presenceOf(t, srv.URL(), user) == 0 }, "presence to uncount the connection")
			want := 0
			if tc.counted {
				want = 1
			}
			uncounts := func() int {
				mu.Lock()
				defer mu.Unlock()
				return uncounted[user]
			}
			testutil.WaitFor(t, 10*time.Second, func() bool { return uncounts() >= want }, "the cleanup")
			if got := uncounts(); got != want {
				t.Fatalf("uncounted %d times, want %d", got, want)
			}
		})
	}
	c, _ := connect(t, n, "after")
	id := sendDM(t, n, "after", `"still up"`)
	if m := next(t, c, "message"); m.ID != id {
		t.Fatalf("got %s", m.Raw)
	}
	// Every case but the last: there the panic came after the cleanup had marked the
	// connection closed.
	if got := closedTotal(t, n, "panic"); got != float64(len(cases)-1) {
		t.Fatalf("closed_total{panic} = %v, want %d", got, len(cases)-1)
	}
	p.Stop()
}

// tightLimits makes every frame past the fifth a refusal that cannot be earned back
// during the test: the sixth to tenth are refused, the eleventh closes.
func tightLimits(o *nodeOptions) {
	o.service.FrameRate = 0.01
	o.service.FrameBurst = 5
}

// Frames gws handles without a message — pings, pongs, continuation frames — count like
// any other. Before, they were not counted at all, and none of these closed.
func TestEveryFrameCountsTowardsTheRateLimit(t *testing.T) {
	srv, _ := startRedis(t)
	n := startNode(t, onRedis(srv), "a", tightLimits)
	p := startBystander(t, n, n, "bystander", nil)
	ping := service.WireFrame(0x89, true, 0, -1, nil)
	pong := service.WireFrame(0x8A, true, 0, -1, nil)
	more := service.WireFrame(0x00, true, 0, -1, nil)
	cases := []struct {
		name   string
		frames [][]byte
	}{
		{"a ping flood", repeatFrame(ping, 11)},
		{"a pong flood", repeatFrame(pong, 11)},
		{"a flood of empty continuation frames in a message that never ends", append([][]byte{service.WireFrame(0x01, true, 0, -1, []byte("{"))}, repeatFrame(more, 10)...)},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := n.hub.Stats().Connections
			c := rawConnect(t, n, "flood")
			c.welcome(t)
			// Exactly the frames that close it, so that no unread byte turns the close into
			// a reset before the client reads it.
			c.write(t, tc.frames...)
			if code, _ := c.closed(); code != 1008 {
				t.Fatalf("close code %d, want 1008", code)
			}
			testutil.WaitFor(t, 10*time.Second, func() bool { return n.hub.Stats().Connections == before }, "the node to release the connection")
			if got := closedTotal(t, n, "rate_limited"); got != float64(i+1) {
				t.Fatalf("closed_total{rate_limited} = %v, want %d", got, i+1)
			}
		})
	}
	p.Stop()
}

// A client that keeps sending faster than the limit is closed with 1008, after the
// rate_limited error frames of a client briefly over it. Before, a connection was closed
// only after FrameBurst refusals in a row, which a steady sender never reaches: each
// token it earns breaks the row.
func TestASteadySenderOverTheLimitIsClosed(t *testing.T) {
	srv, _ := startRedis(t)
	n := startNode(t, onRedis(srv), "a", func(o *nodeOptions) {
		o.service.FrameRate = 10
		o.service.FrameBurst = 20
	})
	p := startBystander(t, n, n, "bystander", nil)
	c := rawConnect(t, n, "steady")
	c.welcome(t)
	_ = c.conn.SetDeadline(time.Now().Add(60 * time.Second))
	type result struct {
		code   uint16
		errors []string
	}
	done := make(chan result, 1)
	go func() {
		code, errs := c.closed()
		done <- result{code, errs}
	}()
	// About 100 frames/s, ten times the limit: each earned token breaks a row of
	// refusals, so the old rule never closed it.
	frame := service.WireFrame(0x81, true, 0, -1, []byte(`{"type":"nope"}`))
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(30 * time.Second)
	var r result
wait:
	for {
		select {
		case r = <-done:
			break wait
		case <-deadline:
			t.Fatal("a steady sender at ten times the limit was not closed in 30s")
		case <-tick.C:
			_, _ = c.conn.Write(frame)
		}
	}
	rateLimited := 0
	for _, code := range r.errors {
		if code == "rate_limited" {
			rateLimited++
		}
	}
	if rateLimited == 0 {
		t.Fatalf("no rate_limited error frame before the close; errors %v", r.errors)
	}
	// The close frame may be lost to a reset when frames were in flight; the count is not.
	if r.code != 1008 && r.code != 0 {
		t.Fatalf("close code %d, want 1008", r.code)
	}
	testutil.WaitFor(t, 10*time.Second, func() bool { return closedTotal(t, n, "rate_limited") == 1 }, "the close to be counted")
	t.Logf("closed with %d after %d rate_limited error frames", r.code, rateLimited)
	p.Stop()
}

// One close is one count, however many frames were still in flight. Before, every
// message read after the limit closed the connection counted again (1,443 in issue 13).
func TestARateLimitCloseIsCountedOnce(t *testing.T) {
	srv, _ := startRedis(t)
	n := startNode(t, onRedis(srv), "a", tightLimits)
	p := startBystander(t, n, n, "bystander", nil)
	c := rawConnect(t, n, "burst")
	c.welcome(t)
	_, _ = c.conn.Write(joinFrames(repeatFrame(service.WireFrame(0x81, true, 0, -1, []byte(`{"type":"nope"}`)), 200)...))
	c.closed()
	testutil.WaitFor(t, 10*time.Second, func() bool { return n.hub.LocalConnections("burst") == 0 }, "the connection to end")
	if got := closedTotal(t, n, "rate_limited"); got != 1 {
		t.Fatalf("closed_total{rate_limited} = %v, want 1", got)
	}
	p.Stop()
}

// A client briefly over the limit gets rate_limited error frames for the frames over it,
// and keeps its connection.
func TestAClientBrieflyOverTheLimitIsOnlyRefused(t *testing.T) {
	srv, _ := startRedis(t)
	n := startNode(t, onRedis(srv), "a", tightLimits)
	c := rawConnect(t, n, "brief")
	c.welcome(t)
	c.write(t, repeatFrame(service.WireFrame(0x81, true, 0, -1, []byte(`{"type":"nope"}`)), 8)...)
	var codes []string
	for len(codes) < 8 {
		op, payload, err := c.frame()
		if err != nil || op != 0x1 {
			t.Fatalf("frame %d: op %d %q %v", len(codes), op, payload, err)
		}
		var f struct{ Type, Code string }
		_ = json.Unmarshal(payload, &f)
		codes = append(codes, f.Code)
	}
	for i, code := range codes {
		if (code == "rate_limited") != (i >= 5) {
			t.Fatalf("answers %v, want five answers to the frame itself, then rate_limited", codes)
		}
	}
	// Still open: a message reaches it.
	sendDM(t, n, "brief", `"still open"`)
	op, payload, err := c.frame()
	if err != nil || op != 0x1 || !strings.Contains(string(payload), "still open") {
		t.Fatalf("after the refusals: op %d %q %v", op, payload, err)
	}
	if got := closedTotal(t, n, "rate_limited"); got != 0 {
		t.Fatalf("closed_total{rate_limited} = %v, want 0", got)
	}
}
