package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestRunServesAndStops runs the backend as main does, on a real port: a login and a signed
// connect over HTTP, then a graceful stop when the context ends.
func TestRunServesAndStops(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, options{
			addr:  "127.0.0.1:0",
			cfg:   Config{Secret: testSecret, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
			ready: func(addr string) { ready <- addr },
		})
	}()
	var base string
	select {
	case addr := <-ready:
		base = "http://" + addr
	case err := <-done:
		t.Fatalf("run returned before serving: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("run did not start within 10 s")
	}

	resp, err := http.Get(base + "/login?user=alice")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var session string
	for _, c := range resp.Cookies() {
		if c.Name == sessionCookie {
			session = c.Value
		}
	}
	if resp.StatusCode != http.StatusOK || session == "" {
		t.Fatalf("login: status %d, session %q", resp.StatusCode, session)
	}

	body := []byte(`{"headers":{"Cookie":"session=` + session + `"},"query":{},"remote_addr":"127.0.0.1"}`)
	req := signedRequest(base+"/hooks/connect", testSecret, time.Now(), body)
	req.RequestURI = "" // a client request, not a server one
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(answer), `"user":"alice"`) {
		t.Fatalf("connect: status %d, body %s", resp.StatusCode, answer)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not stop within 10 s of its context ending")
	}
	if _, err := http.Get(base + "/login?user=alice"); err == nil {
		t.Fatal("the backend still answers after it stopped")
	}
}

func TestRunRefusesToStartWithoutASecret(t *testing.T) {
	err := run(context.Background(), options{addr: "127.0.0.1:0", cfg: Config{}})
	if err == nil || !strings.Contains(err.Error(), "secret") {
		t.Fatalf("run without a secret: %v", err)
	}
}

func TestRunReportsAnAddressInUse(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan string, 1)
	done := make(chan error, 1)
	cfg := Config{Secret: testSecret, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	go func() { done <- run(ctx, options{addr: "127.0.0.1:0", cfg: cfg, ready: func(a string) { ready <- a }}) }()
	addr := <-ready
	if err := run(ctx, options{addr: addr, cfg: cfg}); err == nil {
		t.Fatal("a second backend on the same address started")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
