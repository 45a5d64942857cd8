package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/switchboard-dev/switchboard/events"
)

// signatureTolerance is how far a request's timestamp may be from the backend's clock, as
// docs/hooks.md asks of every receiver.
const signatureTolerance = 5 * time.Minute

// maxHookBody bounds a hook request the backend reads; the node's own are far smaller.
const maxHookBody = 1 << 20

// backendConfig is --serve-backend and its flags: the backend the tool serves itself, so
// that a hook's numbers measure the node's side of the hook and a backend that costs
// nothing, not someone's application.
type backendConfig struct {
	serve  bool
	addr   string        // where it listens (loopback); the node's --rpc-url and --authorize-url point here
	secret string        // the node's --webhook-secret: every request is checked against it
	delay  time.Duration // how long each answer waits, to model a backend's own work
	cacheS float64       // the authorize answer's cache_s
}

// addBackendFlags registers the backend's flags on fs.
func addBackendFlags(fs *flag.FlagSet, b *backendConfig) {
	fs.BoolVar(&b.serve, "serve-backend", false, "serve the hooks' backend from the tool itself, on --backend-addr: POST /rpc and POST /authorize, every request's signature checked")
	fs.StringVar(&b.addr, "backend-addr", defaultBackendAddr, "address of the served backend; start the node with --rpc-url http://<addr>/rpc and --authorize-url http://<addr>/authorize")
	fs.StringVar(&b.secret, "webhook-secret", "", "the node's --webhook-secret, which the served backend checks every request's signature with (required with --serve-backend)")
	fs.DurationVar(&b.delay, "backend-delay", 0, "how long the served backend takes before each answer")
	fs.Float64Var(&b.cacheS, "backend-cache-s", defaultCacheS, "the cache_s of the served backend's authorize answers ({\"allow\":true,\"cache_s\":N})")
}

func (b backendConfig) validate() error {
	if !b.serve {
		return nil
	}
	var errs []error
	if b.secret == "" {
		errs = append(errs, errors.New("--serve-backend checks signatures: give the node's --webhook-secret"))
	}
	if b.delay < 0 || b.cacheS < 0 {
		errs = append(errs, errors.New("--backend-delay and --backend-cache-s must not be negative"))
	}
	if _, _, err := net.SplitHostPort(b.addr); err != nil {
		errs = append(errs, fmt.Errorf("--backend-addr %q: %w", b.addr, err))
	}
	return errors.Join(errs...)
}

// backend serves the rpc and authorize hooks for a run. Each request is checked as a real
// backend must check it (events.Verify over the raw body); one that fails is answered 401
// and counted, which fails the run. An rpc answer carries the handler's own time, so that
// the tool can tell the node's overhead from the backend's work.
type backend struct {
	cfg       backendConfig
	srv       *http.Server
	ln        net.Listener
	done      chan struct{}
	rpc       atomic.Int64
	authorize atomic.Int64
	refused   atomic.Int64 // bad signatures, wrong methods
	handler   Histogram    // handler time of the rpc calls
}

// startBackend listens on cfg.addr and serves until close.
func startBackend(cfg backendConfig) (*backend, error) {
	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return nil, fmt.Errorf("--serve-backend: %w", err)
	}
	b := &backend{cfg: cfg, ln: ln, done: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("/rpc", b.serveRPC)
	mux.HandleFunc("/authorize", b.serveAuthorize)
	b.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(b.done)
		_ = b.srv.Serve(ln)
	}()
	return b, nil
}

// url returns the URL of path on the backend.
func (b *backend) url(path string) string { return "http://" + b.ln.Addr().String() + path }

// close stops the backend and waits for it.
func (b *backend) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = b.srv.Shutdown(ctx)
	<-b.done
}

// verified reads the body of a hook request and checks its signature; false means the
// request was answered with a refusal.
func (b *backend) verified(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	if r.Method != http.MethodPost {
		b.refused.Add(1)
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return nil, false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxHookBody))
	if err != nil {
		b.refused.Add(1)
		http.Error(w, "bad body", http.StatusBadRequest)
		return nil, false
	}
	if err := events.Verify(b.cfg.secret, r.Header, body, time.Now(), signatureTolerance); err != nil {
		b.refused.Add(1)
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return nil, false
	}
	return body, true
}

// serveRPC answers every call with {"backend_ns":<the handler's time>}.
func (b *backend) serveRPC(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	if _, ok := b.verified(w, r); !ok {
		return
	}
	b.rpc.Add(1)
	if b.cfg.delay > 0 {
		time.Sleep(b.cfg.delay) // the backend's own work
	}
	took := time.Since(start)
	b.handler.Record(int64(took))
	w.Header().Set("Content-Type", "application/json")
	var buf [40]byte
	out := append(buf[:0], `{"backend_ns":`...)
	out = strconv.AppendInt(out, int64(took), 10)
	_, _ = w.Write(append(out, '}'))
}

// serveAuthorize allows everything, for cache_s seconds.
func (b *backend) serveAuthorize(w http.ResponseWriter, r *http.Request) {
	if _, ok := b.verified(w, r); !ok {
		return
	}
	b.authorize.Add(1)
	if b.cfg.delay > 0 {
		time.Sleep(b.cfg.delay)
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = fmt.Fprintf(w, `{"allow":true,"cache_s":%s}`, strconv.FormatFloat(b.cfg.cacheS, 'f', -1, 64))
}

// BackendReport is what the served backend saw.
type BackendReport struct {
	Addr           string  `json:"addr"`
	RPCCalls       int64   `json:"rpc_calls"`
	AuthorizeCalls int64   `json:"authorize_calls"`
	Refused        int64   `json:"refused"` // bad signatures and malformed requests
	DelayMS        float64 `json:"delay_ms,omitempty"`
	CacheS         float64 `json:"cache_s"`
	Handler        Latency `json:"handler"` // the rpc handler's own time
}

func (b *backend) report() *BackendReport {
	if b == nil {
		return nil
	}
	return &BackendReport{
		Addr:           b.ln.Addr().String(),
		RPCCalls:       b.rpc.Load(),
		AuthorizeCalls: b.authorize.Load(),
		Refused:        b.refused.Load(),
		DelayMS:        round3(float64(b.cfg.delay) / 1e6),
		CacheS:         b.cfg.cacheS,
		Handler:        b.handler.Summary(),
	}
}

// maybeStartBackend starts the backend when the run serves one; nil otherwise.
func maybeStartBackend(cfg config, prog *progress) (*backend, error) {
	if !cfg.backend.serve {
		return nil, nil
	}
	b, err := startBackend(cfg.backend)
	if err != nil {
		return nil, err
	}
	prog.printf("serving the hooks' backend on %s (rpc %s, authorize %s)", b.ln.Addr(), b.url("/rpc"), b.url("/authorize"))
	return b, nil
}
