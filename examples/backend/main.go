// Command backend is an example application backend for Switchboard: a cookie login, the
// connect, authorize and rpc hooks, and the events webhook, with the standard library and
// the project's events package only. Copy it and replace the rules and the data.
//
//	go run ./examples/backend --addr 127.0.0.1:9090 --secret S
//	switchboard --webhook-secret S \
//	  --connect-url http://127.0.0.1:9090/hooks/connect \
//	  --authorize-url http://127.0.0.1:9090/hooks/authorize \
//	  --rpc-url http://127.0.0.1:9090/hooks/rpc \
//	  --webhook-url http://127.0.0.1:9090/events
//
// Then sign in at http://127.0.0.1:9090/login?user=alice and open http://127.0.0.1:8080/:
// the browser sends the session cookie with the WebSocket upgrade. See docs/hooks.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9090", "listen address")
	secret := flag.String("secret", os.Getenv("SWITCHBOARD_WEBHOOK_SECRET"),
		"Switchboard's --webhook-secret (env SWITCHBOARD_WEBHOOK_SECRET); required")
	ttl := flag.Duration("session-ttl", time.Hour, "how long a login lasts")
	secure := flag.Bool("secure-cookies", false, "mark the session cookie Secure (serve over HTTPS)")
	flag.Parse()

	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, options{
		addr: *addr,
		cfg:  Config{Secret: *secret, SessionTTL: *ttl, SecureCookies: *secure, Logger: log},
	})
	stop()
	if err != nil {
		log.Error("backend stopped", "err", err)
		os.Exit(1)
	}
}

// options are run's inputs.
type options struct {
	addr string
	cfg  Config
	// ready, when set, is called with the listening address once requests are accepted
	// (tests listen on port 0).
	ready func(addr string)
}

// run serves the backend until ctx ends, then stops gracefully: no new connections, and up
// to 5 s for the requests in progress.
func run(ctx context.Context, opts options) error {
	b, err := New(opts.cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", opts.addr)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           b,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute, // Switchboard keeps its hook connections alive
		ErrorLog:          slog.NewLogLogger(b.log.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	b.log.Info("listening", "addr", ln.Addr().String())
	if opts.ready != nil {
		opts.ready(ln.Addr().String())
	}

	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = srv.Shutdown(shutdownCtx)
	if serveErr := <-served; !errors.Is(serveErr, http.ErrServerClosed) {
		return serveErr
	}
	if err != nil {
		return fmt.Errorf("graceful shutdown: %w", err)
	}
	b.log.Info("stopped")
	return nil
}
