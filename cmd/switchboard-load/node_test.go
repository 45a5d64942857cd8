package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard-dev/switchboard/internal/redistest"
	"github.com/switchboard-dev/switchboard/internal/testutil"
	"github.com/switchboard-dev/switchboard/service"
	"github.com/switchboard-dev/switchboard/subscriptions"
)

// startNode runs a real Switchboard node in the test process, built as cmd/switchboard
// builds it, on a redis-server of its own, and returns its base URL. It stops when the
// test ends.
func startNode(t *testing.T, cfg service.Config) string {
	t.Helper()
	return startNodeHub(t, cfg, subscriptions.Config{})
}

// startNodeHub is startNode with a hub configuration (its Node and Logger are set here).
func startNodeHub(t *testing.T, cfg service.Config, hubCfg subscriptions.Config) string {
	t.Helper()
	base, _ := startNodeRedis(t, cfg, hubCfg)
	return base
}

// startNodeRedis is startNodeHub that also returns the URL of the node's redis-server.
func startNodeRedis(t *testing.T, cfg service.Config, hubCfg subscriptions.Config) (base, redisURL string) {
	t.Helper()
	rs := redistest.Start(t)
	opts, err := redis.ParseURL(rs.URL())
	if err != nil {
		t.Fatal(err)
	}
	opts.MaxRetries = -1
	opts.ContextTimeoutEnabled = true
	rdb := redis.NewClient(opts)
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	hubCfg.Node, hubCfg.Logger = "load-test", log
	hub, err := subscriptions.New(rdb, hubCfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Logger = log
	srv := service.New(hub, cfg)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}

	ctx, stop := context.WithCancel(context.Background())
	hubCtx, stopHub := context.WithCancel(context.Background())
	hubDone := make(chan struct{})
	go func() {
		defer close(hubDone)
		_ = hub.Run(hubCtx)
	}()
	served := make(chan struct{})
	go func() {
		defer close(served)
		if err := srv.Serve(ctx, ln); err != nil {
			t.Errorf("serve: %v", err)
		}
		stopHub()
		<-hubDone
		_ = rdb.Close()
	}()
	t.Cleanup(func() {
		stop()
		<-served
	})
	testutil.Eventually(t, 10*time.Second, func() error {
		if err := hub.Ready(); err != nil {
			return fmt.Errorf("node not ready: %w", err)
		}
		return nil
	})
	return "http://" + ln.Addr().String(), rs.URL()
}

// runTool runs the command as a user would, with --json --quiet, and returns its exit
// status and decoded result.
func runTool(t *testing.T, args ...string) (int, *Result) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := run(ctx, append(args, "--json", "--quiet"), &stdout, &stderr)
	if stderr.Len() > 0 {
		t.Logf("stderr:\n%s", stderr.String())
	}
	var res Result
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("exit %d, stdout is not a result (%v):\n%s", code, err, stdout.String())
	}
	return code, &res
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// checkLatency fails the test unless l has n samples in a plausible order.
func checkLatency(t *testing.T, what string, l Latency, n uint64) {
	t.Helper()
	if l.Count != n {
		t.Errorf("%s: %d samples, want %d", what, l.Count, n)
	}
	if !(l.P50 > 0 && l.P50 <= l.P95 && l.P95 <= l.P99 && l.P99 <= l.P999 && l.P999 <= l.Max && l.Max < 10_000) {
		t.Errorf("%s: implausible percentiles %+v", what, l)
	}
}

// get fetches u and returns its status and body.
func get(t *testing.T, u string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}
