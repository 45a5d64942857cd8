package service_test

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// In dev mode (no JWT secret) /v1, /admin and /ws are open to whoever reaches the node:
// a web page must not reach them through its visitor's browser, neither from its own
// origin (CSRF) nor by re-pointing its own name at 127.0.0.1 (DNS rebinding). Issue 13,
// finding 8.

// doHost sends a request with the given Host header (the connection still goes to u's
// address) and extra header pairs.
func doHost(t *testing.T, method, u, host string, body io.Reader, header ...string) response {
	t.Helper()
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s (Host %s): %v", method, u, host, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return response{status: res.StatusCode, body: b, header: res.Header}
}

// upgradeStatus sends a WebSocket upgrade for user with the given Host over a raw
// connection and returns the status line's code.
func upgradeStatus(t *testing.T, n *node, host, user string) int {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(n.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	key := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef"))
	fmt.Fprintf(conn, "GET /ws?user=%s HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: %s\r\n\r\n", user, host, key)
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("upgrade with Host %s: %v", host, err)
	}
	res.Body.Close()
	return res.StatusCode
}

func TestDevModeRefusesCrossOriginBrowserRequests(t *testing.T) {
	srv, _ := startRedis(t)
	n := startNode(t, onRedis(srv), "a")
	b := newBystanders(t, n)
	probe := startBystander(t, n, n, "bystander", nil)
	own := n.base
	cases := []struct {
		name         string
		method, path string
		contentType  string
		body         string
		header       []string
		status       int // 403: refused as forbidden
	}{
		{"a cross-origin text/plain POST to /v1 is refused", "POST", "/v1/users/bob/messages", "text/plain", "hi", []string{"Origin", "http://evil.example"}, 403},
		{"a cross-origin JSON POST to /v1 is refused", "POST", "/v1/users/bob/messages", "application/json", `{"a":1}`, []string{"Origin", "http://evil.example", "Sec-Fetch-Site", "cross-site"}, 403},
		{"a cross-origin batch POST is refused", "POST", "/v1/messages", "text/plain", `{"messages":[{"to":"bob","data":1}]}`, []string{"Origin", "http://evil.example"}, 403},
		{"a POST from another port of the same host is refused", "POST", "/v1/users/bob/messages", "text/plain", "hi", []string{"Origin", "http://127.0.0.1:1"}, 403},
		{"a POST from the null origin is refused", "POST", "/v1/users/bob/messages", "text/plain", "hi", []string{"Origin", "null"}, 403},
		{"a POST marked cross-site without an Origin is refused", "POST", "/v1/users/bob/messages", "text/plain", "hi", []string{"Sec-Fetch-Site", "cross-site"}, 403},
		{"a POST marked same-site is refused", "POST", "/v1/users/bob/messages", "text/plain", "hi", []string{"Sec-Fetch-Site", "same-site"}, 403},
		{"a cross-site POST claiming the node's own origin is refused", "POST", "/v1/users/bob/messages", "text/plain", "hi", []string{"Origin", own, "Sec-Fetch-Site", "cross-site"}, 403},
		{"a cross-origin DELETE of connections is refused", "DELETE", "/v1/users/bob/connections", "", "", []string{"Origin", "http://evil.example"}, 403},
		{"a cross-origin room join is refused", "PUT", "/v1/rooms/r/members/bob", "", "", []string{"Origin", "http://evil.example"}, 403},
		{"a cross-origin GET of history is refused", "GET", "/v1/users/bob/messages", "", "", []string{"Origin", "http://evil.example"}, 403},
		{"a cross-site GET of history without an Origin is refused", "GET", "/v1/users/bob/messages", "", "", []string{"Sec-Fetch-Site", "cross-site"}, 403},
		{"a cross-origin GET of admin is refused", "GET", "/admin/subscriptions", "", "", []string{"Origin", "http://evil.example"}, 403},
		{"a cross-site GET of the admin page is refused", "GET", "/admin/", "", "", []string{"Sec-Fetch-Site", "cross-site"}, 403},
		{"a same-origin POST is accepted", "POST", "/v1/users/bob/messages", "application/json", `{"a":1}`, []string{"Origin", own, "Sec-Fetch-Site", "same-origin"}, 202},
		{"a POST without an Origin is accepted", "POST", "/v1/users/bob/messages", "application/json", `{"a":2}`, nil, 202},
		{"a POST typed in by the user is accepted", "POST", "/v1/users/bob/messages", "application/json", `{"a":3}`, []string{"Sec-Fetch-Site", "none"}, 202},
		{"a same-origin GET of admin is served", "GET", "/admin/subscriptions", "", "", []string{"Origin", own, "Sec-Fetch-Site", "same-origin"}, 200},
		{"a GET of history without an Origin is served", "GET", "/v1/users/bob/messages", "", "", nil, 200},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			r := do(t, tc.method, n.base+tc.path, tc.contentType, body, tc.header...)
			switch tc.status {
			case http.StatusForbidden:
				checkRefusal(t, r, http.StatusForbidden, "forbidden")
				if !strings.Contains(string(r.body), "cross-origin") {
					t.Fatalf("refusal %s does not say why", r.body)
				}
			case http.StatusAccepted:
				if r.status != tc.status {
					t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
				}
				id, _ := r.json(t)["id"].(string)
				if m := next(t, b.bob, "message"); m.ID != id {
					t.Fatalf("bob got %s, want message %s", m.Raw, id)
				}
				b.last = id
			default:
				if r.status != tc.status {
					t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
				}
			}
			b.checkUntouched(t) // bob is still connected: no DELETE went through
		})
	}
	t.Logf("bystander p99 %v", probe.Stop())
}

func TestDevModeServesOnlyLoopbackHostNames(t *testing.T) {
	srv1, _ := startRedis(t)
	srv2, _ := startRedis(t)
	n := startNode(t, onRedis(srv1), "a")
	listed := startNode(t, onRedis(srv2), "listed", func(o *nodeOptions) { o.service.DevHosts = []string{"switchboard"} })
	watching := map[*node]*bystanders{n: newBystanders(t, n), listed: newBystanders(t, listed)}
	probe := startBystander(t, n, n, "bystander", nil)
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(n.base, "http://"))
	foreign := []string{"evil.example", "evil.example:" + port, "127.0.0.1.evil.example", "localhost.evil.example",
		"0.0.0.0:" + port, "10.0.0.1", "[::2]:" + port, "switchboard"}
	for _, host := range foreign {
		t.Run("Host "+host+" is refused", func(t *testing.T) {
			for _, rq := range []struct{ method, path, body string }{
				{"POST", "/v1/users/bob/messages", `{"a":1}`},
				{"DELETE", "/v1/users/bob/connections", ""},
				{"GET", "/admin/subscriptions", ""},
				{"GET", "/", ""},
				{"GET", "/metrics", ""},
			} {
				var body io.Reader
				if rq.body != "" {
					body = strings.NewReader(rq.body)
				}
				r := doHost(t, rq.method, n.base+rq.path, host, body, "Content-Type", "application/json")
				checkRefusal(t, r, http.StatusForbidden, "forbidden")
				if !strings.Contains(string(r.body), "loopback Host") {
					t.Fatalf("%s %s: refusal %s does not say why", rq.method, rq.path, r.body)
				}
			}
			if code := upgradeStatus(t, n, host, "dave"); code != http.StatusForbidden {
				t.Fatalf("the upgrade got %d, want 403", code)
			}
			watching[n].checkUntouched(t)
		})
	}
	loopback := []string{"localhost:" + port, "LOCALHOST:" + port, "localhost.:" + port, "app.localhost:" + port,
		"127.0.0.1:" + port, "127.9.8.7:" + port, "[::1]:" + port, "127.0.0.1"}
	for _, host := range loopback {
		t.Run("Host "+host+" is served", func(t *testing.T) {
			r := doHost(t, "POST", n.base+"/v1/users/bob/messages", host, strings.NewReader(`{"ok":1}`), "Content-Type", "application/json")
			if r.status != http.StatusAccepted {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			id, _ := r.json(t)["id"].(string)
			if m := next(t, watching[n].bob, "message"); m.ID != id {
				t.Fatalf("bob got %s, want %s", m.Raw, id)
			}
			watching[n].last = id
			if code := upgradeStatus(t, n, host, "dave"); code != http.StatusSwitchingProtocols {
				t.Fatalf("the upgrade got %d, want 101", code)
			}
			watching[n].checkUntouched(t)
		})
	}
	t.Run("health checks answer any Host", func(t *testing.T) {
		for _, p := range []string{"/healthz", "/readyz"} {
			if r := doHost(t, "GET", n.base+p, "10.0.0.7:8080", nil); r.status != http.StatusOK {
				t.Fatalf("%s: %d %s", p, r.status, r.body)
			}
		}
	})
	t.Run("a Host listed in DevHosts is served", func(t *testing.T) {
		b := watching[listed]
		r := doHost(t, "POST", listed.base+"/v1/users/bob/messages", "switchboard:8080", strings.NewReader(`{"ok":1}`), "Content-Type", "application/json")
		if r.status != http.StatusAccepted {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
		id, _ := r.json(t)["id"].(string)
		if m := next(t, b.bob, "message"); m.ID != id {
			t.Fatalf("bob got %s, want %s", m.Raw, id)
		}
		b.last = id
		if code := upgradeStatus(t, listed, "SwitchBoard", "dave"); code != http.StatusSwitchingProtocols {
			t.Fatalf("the upgrade got %d, want 101", code)
		}
		checkRefusal(t, doHost(t, "GET", listed.base+"/v1/users/bob/messages", "evil.example", nil), http.StatusForbidden, "forbidden")
		b.checkUntouched(t)
	})
	t.Logf("bystander p99 %v", probe.Stop())
}
