package main

import (
	"bufio"
	"errors"
	"flag"
	"io"
	"net"
	"net/http"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/internal/wsclient"
)

// TestTuningFlagsAndVariablesReachTheConfig sets each tuning setting once by its flag and
// once by its environment variable, and checks the one field it sets.
func TestTuningFlagsAndVariablesReachTheConfig(t *testing.T) {
	cases := []struct {
		flag, value string
		want        func(*config)
	}{
		{"ping-interval", "5s", func(c *config) { c.PingInterval = 5 * time.Second }},
		{"read-timeout", "90s", func(c *config) { c.ReadTimeout = 90 * time.Second }},
		{"write-timeout", "3s", func(c *config) { c.WriteTimeout = 3 * time.Second }},
		{"shutdown-timeout", "30s", func(c *config) { c.ShutdownTimeout = 30 * time.Second }},
		{"drain-delay", "4s", func(c *config) { c.DrainDelay = 4 * time.Second }},
		{"compression", "true", func(c *config) { c.Compression = true }},
		{"max-conns-per-user", "3", func(c *config) { c.MaxConnsPerUser = 3 }},
		{"frame-rate", "12.5", func(c *config) { c.FrameRate = 12.5 }},
		{"frame-burst", "7", func(c *config) { c.FrameBurst = 7 }},
		{"max-queue-messages", "100", func(c *config) { c.MaxQueueMessages = 100 }},
		{"max-queue-bytes", "1048576", func(c *config) { c.MaxQueueBytes = 1 << 20 }},
		{"max-pending", "64", func(c *config) { c.MaxPending = 64 }},
		{"redis-heartbeat", "250ms", func(c *config) { c.RedisHeartbeat = 250 * time.Millisecond }},
		{"registry-interval", "5s", func(c *config) { c.RegistryInterval = 5 * time.Second }},
		{"webhook-timeout", "2s", func(c *config) { c.WebhookTimeout = 2 * time.Second }},
		{"webhook-retry-max", "1m", func(c *config) { c.WebhookRetryMax = time.Minute }},
		{"event-max-age", "2h", func(c *config) { c.EventMaxAge = 2 * time.Hour }},
		{"hook-max-concurrent", "16", func(c *config) { c.HookMaxConcurrent = 16 }},
		{"insecure-dev", "true", func(c *config) { c.InsecureDev = true }},
	}
	for _, tc := range cases {
		want := documentedDefaults
		tc.want(&want)
		for _, way := range []struct {
			name   string
			args   []string
			getenv func(string) string
		}{
			{"flag", []string{"--" + tc.flag, tc.value}, fakeEnv()},
			{"flag=value", []string{"--" + tc.flag + "=" + tc.value}, fakeEnv()},
			{"environment", nil, fakeEnv(envName(tc.flag), tc.value)},
		} {
			if tc.flag == "compression" || tc.flag == "insecure-dev" {
				if way.name == "flag" { // a boolean flag stands alone
					way.args = []string{"--" + tc.flag}
				}
			}
			t.Run(tc.flag+" by "+way.name, func(t *testing.T) {
				got, err := parseConfig(way.args, way.getenv, io.Discard)
				if err != nil {
					t.Fatalf("parseConfig(%q): %v", way.args, err)
				}
				got.NodeID = ""
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("parseConfig(%q):\n got %+v\nwant %+v", way.args, got.tuning, want.tuning)
				}
			})
		}
	}
}

func TestTuningRefusesBadValues(t *testing.T) {
	cases := []struct {
		name     string
		args     []string
		getenv   func(string) string
		wantText []string // the error names the setting and the value
	}{
		{"a ping interval without a unit", []string{"--ping-interval", "20"}, fakeEnv(), []string{"--ping-interval", `"20"`, "duration"}},
		{"a ping interval under a second", nil, fakeEnv("SWITCHBOARD_PING_INTERVAL", "10ms"), []string{"--ping-interval", `"10ms"`}},
		{"a read timeout that is not a duration", nil, fakeEnv("SWITCHBOARD_READ_TIMEOUT", "long"), []string{"--read-timeout", `"long"`}},
		{"a read timeout not above the ping interval", []string{"--ping-interval", "30s", "--read-timeout", "30s"}, fakeEnv(), []string{"--read-timeout", "--ping-interval"}},
		{"a write timeout of zero", []string{"--write-timeout", "0s"}, fakeEnv(), []string{"--write-timeout", `"0s"`}},
		{"a negative shutdown timeout", nil, fakeEnv("SWITCHBOARD_SHUTDOWN_TIMEOUT", "-1s"), []string{"--shutdown-timeout", `"-1s"`}},
		{"a drain delay over a minute", []string{"--drain-delay", "2m"}, fakeEnv(), []string{"--drain-delay", `"2m"`}},
		{"compression that is not true or false", []string{"--compression=maybe"}, fakeEnv(), []string{"compression", "maybe"}},
		{"compression from the environment that is not true or false", nil, fakeEnv("SWITCHBOARD_COMPRESSION", "yes"), []string{"--compression", `"yes"`, "true or false"}},
		{"insecure dev from the environment that is not true or false", nil, fakeEnv("SWITCHBOARD_INSECURE_DEV", "please"), []string{"--insecure-dev", `"please"`}},
		{"zero connections per user", []string{"--max-conns-per-user", "0"}, fakeEnv(), []string{"--max-conns-per-user", `"0"`}},
		{"a frame rate of zero", []string{"--frame-rate", "0"}, fakeEnv(), []string{"--frame-rate", `"0"`}},
		{"a frame rate that is not a number", nil, fakeEnv("SWITCHBOARD_FRAME_RATE", "fast"), []string{"--frame-rate", `"fast"`}},
		{"a negative frame burst", []string{"--frame-burst", "-1"}, fakeEnv(), []string{"--frame-burst", `"-1"`}},
		{"a queue of zero messages", []string{"--max-queue-messages", "0"}, fakeEnv(), []string{"--max-queue-messages", `"0"`}},
		{"a queue under 64 KiB", []string{"--max-queue-bytes", "1000"}, fakeEnv(), []string{"--max-queue-bytes", `"1000"`}},
		{"a queue smaller than the largest message", []string{"--max-queue-bytes", "65536", "--max-message-bytes", "100000"}, fakeEnv(), []string{"--max-queue-bytes", "--max-message-bytes"}},
		{"a pending buffer of 1", nil, fakeEnv("SWITCHBOARD_MAX_PENDING", "1"), []string{"--max-pending", `"1"`}},
		{"a redis heartbeat without a unit", []string{"--redis-heartbeat", "1"}, fakeEnv(), []string{"--redis-heartbeat", `"1"`}},
		{"a registry interval under half a second", []string{"--registry-interval", "100ms"}, fakeEnv(), []string{"--registry-interval", `"100ms"`}},
		{"a webhook timeout of zero", []string{"--webhook-timeout", "0"}, fakeEnv(), []string{"--webhook-timeout", `"0"`}},
		{"a webhook retry max over an hour", nil, fakeEnv("SWITCHBOARD_WEBHOOK_RETRY_MAX", "2h"), []string{"--webhook-retry-max", `"2h"`}},
		{"an event max age under a minute", []string{"--event-max-age", "30s"}, fakeEnv(), []string{"--event-max-age", `"30s"`}},
		{"zero hook calls in flight", []string{"--hook-max-concurrent", "0"}, fakeEnv(), []string{"--hook-max-concurrent", `"0"`}},
		{"a webhook URL that is not http", []string{"--webhook-url", "ftp://backend.example/"}, fakeEnv(), []string{"--webhook-url", `"ftp://backend.example/"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name+" is refused", func(t *testing.T) {
			_, err := parseConfig(tc.args, tc.getenv, io.Discard)
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

// TestConfigurationDocMatchesTheFlags fails when docs/configuration.md and the flag set
// disagree; go generate ./cmd/switchboard rewrites the doc.
func TestConfigurationDocMatchesTheFlags(t *testing.T) {
	var want strings.Builder
	if err := writeMarkdown(&want); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want.String() {
		t.Fatalf("docs/configuration.md does not match the flags: run go generate ./cmd/switchboard\n--- generated:\n%s", want.String())
	}
	// Every flag the parser knows is in the doc, under a known group.
	var c config
	fs, settings := c.flagSet(fakeEnv())
	groups := map[string]bool{}
	for _, g := range settingGroups {
		groups[g] = true
	}
	n := 0
	fs.VisitAll(func(f *flag.Flag) {
		n++
		if !strings.Contains(want.String(), "| `--"+f.Name+"` | `"+envName(f.Name)+"` |") {
			t.Errorf("--%s is not in docs/configuration.md", f.Name)
		}
	})
	for _, st := range settings {
		if !groups[st.group] {
			t.Errorf("--%s has no group --help shows (%q)", st.name, st.group)
		}
	}
	if n != len(settings) {
		t.Fatalf("the flag set has %d flags, the settings %d", n, len(settings))
	}
}

// TestHelpGroupsTheFlags checks that --help shows every flag with its variable, under the
// group headings, in their order.
func TestHelpGroupsTheFlags(t *testing.T) {
	var stderr strings.Builder
	if _, err := parseConfig([]string{"--help"}, fakeEnv(), &stderr); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("--help: %v, want flag.ErrHelp", err)
	}
	out := stderr.String()
	last := -1
	for _, g := range settingGroups {
		i := strings.Index(out, "\n"+g+":\n")
		if i < last {
			t.Fatalf("group %q missing or out of order in:\n%s", g, out)
		}
		last = i
	}
	var c config
	_, settings := c.flagSet(fakeEnv())
	for _, st := range settings {
		i := strings.Index(out, "  --"+st.name+" ")
		if i < 0 {
			i = strings.Index(out, "  --"+st.name+"\n")
		}
		g := strings.Index(out, "\n"+st.group+":\n")
		if i < g || !strings.Contains(out, envName(st.name)) {
			t.Errorf("--%s (%s) is not listed under %s:\n%s", st.name, envName(st.name), st.group, out)
		}
	}
}

// TestRunWiresConnectionTuning checks that a tuning flag reaches the running server:
// --max-conns-per-user 1 refuses a user's second WebSocket with 429.
func TestRunWiresConnectionTuning(t *testing.T) {
	p := startProcess(t, noEnv, "--max-conns-per-user", "1", "--ping-interval", "2s", "--frame-burst", "5")
	p.dial(t, "user=alice")
	_, err := wsclient.Dial("ws"+strings.TrimPrefix(p.base, "http")+"/ws?user=alice", wsclient.Options{})
	var refused *wsclient.ErrRefused
	if !errors.As(err, &refused) || refused.Status != http.StatusTooManyRequests {
		t.Fatalf("a second connection with --max-conns-per-user 1: %v, want 429", err)
	}
}

// TestRunWiresCompression checks that --compression reaches the WebSocket upgrade: a client
// offering permessage-deflate gets it with the flag and not without.
func TestRunWiresCompression(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want bool
	}{{nil, false}, {[]string{"--compression"}, true}} {
		p := startProcess(t, noEnv, tc.args...)
		conn, err := net.Dial("tcp", strings.TrimPrefix(p.base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = conn.Write([]byte("GET /ws?user=alice HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
			"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n"))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		_ = conn.Close()
		if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("upgrade with %q: %v %v", tc.args, resp, err)
		}
		got := strings.HasPrefix(resp.Header.Get("Sec-WebSocket-Extensions"), "permessage-deflate")
		if got != tc.want {
			t.Fatalf("with %q the server negotiated permessage-deflate: %v, want %v", tc.args, got, tc.want)
		}
	}
}
