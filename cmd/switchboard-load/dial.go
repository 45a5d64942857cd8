package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/switchboard-dev/switchboard/client"
	"github.com/switchboard-dev/switchboard/internal/wsclient"
)

// nodes is how the tool reaches the deployment under test: the nodes' base URLs, the
// credentials, and one HTTP client shared by the setup requests (health checks, room
// membership). Publishers have connections of their own (poster.go).
type nodes struct {
	base   []string // http(s)://host:port[/path]
	ws     []string // ws(s)://host:port[/path]/ws?
	apiKey string
	signer *signer           // nil: dev auth
	tokens map[string]string // minted before the connect storm (prepare), read-only after
	http   *http.Client
	api    []*client.Client // one per base URL, over http: the setup calls of the API
	// backend is the hooks' backend the run serves (--serve-backend); nil if none.
	backend *backend
	// compression offers permessage-deflate; wireIn counts what the WebSockets read.
	compression bool
	wireIn      *atomic.Int64
}

// openNodes gets a run's nodes ready: the backend first, when the run serves one (a node
// may ask it at once), then the nodes, checked to answer. close releases both.
func openNodes(ctx context.Context, cfg config, prog *progress) (n *nodes, close func(), err error) {
	be, err := maybeStartBackend(cfg, prog)
	if err != nil {
		return nil, nil, err
	}
	closeBackend := func() {
		if be != nil {
			be.close()
		}
	}
	if n, err = newNodes(cfg); err != nil {
		closeBackend()
		return nil, nil, err
	}
	n.backend = be
	close = func() { n.close(); closeBackend() }
	if err := n.preflight(ctx); err != nil {
		close()
		return nil, nil, err
	}
	return n, close, nil
}

func newNodes(cfg config) (*nodes, error) {
	n := &nodes{base: cfg.urls, apiKey: cfg.apiKey, signer: cfg.signer, compression: cfg.compression, wireIn: cfg.wireIn}
	for _, b := range cfg.urls {
		n.ws = append(n.ws, "ws"+strings.TrimPrefix(b, "http")+"/ws?")
	}
	timeout := cfg.httpTimeout
	if timeout <= 0 {
		timeout = defaultHTTPTimeout
	}
	n.http = &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			Proxy:       nil, // a load tool talks to the nodes directly, whatever HTTP_PROXY says
			DialContext: (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			// Every worker keeps its connection: a new TCP connection per request would
			// measure handshakes, and exhaust ephemeral ports.
			MaxIdleConnsPerHost: 2 * memberWorkers,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
	}
	for _, b := range cfg.urls {
		c, err := client.New(b, client.WithAPIKey(n.apiKey), client.WithHTTPClient(n.http), client.WithUserAgent("switchboard-load"))
		if err != nil {
			return nil, err
		}
		n.api = append(n.api, c)
	}
	return n, nil
}

// close releases the idle HTTP connections.
func (n *nodes) close() { n.http.CloseIdleConnections() }

// wsURL returns the WebSocket URL for user on node i (modulo the number of nodes),
// resuming after since when it is not empty.
func (n *nodes) wsURL(i int, user, since, roomSince string) (string, error) {
	q := url.Values{}
	if n.signer != nil {
		tok := n.tokens[user]
		if tok == "" {
			var err error
			if tok, err = n.signer.mint(user, time.Now()); err != nil {
				return "", err
			}
		}
		q.Set("token", tok)
	} else {
		q.Set("user", user)
	}
	if since != "" {
		q.Set("since", since)
	}
	if roomSince != "" {
		q.Set("room_since", roomSince) // big rooms' positions (docs/protocol.md, "Big rooms")
	}
	return n.ws[i%len(n.ws)] + q.Encode(), nil
}

// prepare mints the tokens of users before they connect, with a token key; they are
// reused when a connection resumes.
func (n *nodes) prepare(ctx context.Context, users []string) error {
	if n.signer == nil {
		return nil
	}
	toks, err := n.signer.mintAll(ctx, users)
	if err != nil {
		return fmt.Errorf("mint tokens: %w", err)
	}
	n.tokens = toks
	return nil
}

// apiClient returns the API client of node i (modulo the number of nodes).
func (n *nodes) apiClient(i int) *client.Client { return n.api[i%len(n.api)] }

// apiURL returns base URL i (modulo the number of nodes) joined with path.
func (n *nodes) apiURL(i int, path string) string { return n.base[i%len(n.base)] + path }

// request sends an API request with the key, reads the whole answer (so that the
// connection is reused) and returns its status and body.
func (n *nodes) request(ctx context.Context, method, url, contentType string, body []byte) (int, []byte, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, r)
	if err != nil {
		return 0, nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if n.apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+n.apiKey)
	}
	resp, err := n.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, b, err
}

// preflight checks that every node answers /healthz, so that a wrong --url fails with one
// clear line instead of a thousand dial errors.
func (n *nodes) preflight(ctx context.Context) error {
	for i, b := range n.base {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		status, _, err := n.request(ctx, http.MethodGet, n.apiURL(i, "/healthz"), "", nil)
		cancel()
		if err != nil {
			return fmt.Errorf("cannot reach %s: %s", b, errorClass(err))
		}
		if status != http.StatusOK {
			return fmt.Errorf("%s/healthz answered %d: is it a Switchboard node?", b, status)
		}
	}
	return nil
}

// dial opens a WebSocket for user on node i and waits for its welcome, which the server
// sends only once Redis has confirmed the user's subscription.
func (n *nodes) dial(i int, user, since string, buffer int, timeout time.Duration) (*wsclient.Conn, wsclient.Frame, error) {
	return n.dialRooms(i, user, since, "", buffer, timeout)
}

// dialRooms is dial resuming big rooms too, from roomSince (room_since's form).
func (n *nodes) dialRooms(i int, user, since, roomSince string, buffer int, timeout time.Duration) (*wsclient.Conn, wsclient.Frame, error) {
	u, err := n.wsURL(i, user, since, roomSince)
	if err != nil {
		return nil, wsclient.Frame{}, fmt.Errorf("mint token: %w", err)
	}
	c, err := wsclient.Dial(u, wsclient.Options{Buffer: buffer, Compression: n.compression, ReadBytes: n.wireIn, FastMessages: true})
	if err != nil {
		return nil, wsclient.Frame{}, err
	}
	f, err := c.NextWithin(timeout)
	switch {
	case errors.Is(err, wsclient.ErrClosed):
		code, _ := c.CloseCode()
		c.Abort()
		return nil, f, &welcomeError{fmt.Sprintf("closed before the welcome (code %d)", code)}
	case err != nil:
		c.Abort()
		return nil, f, &welcomeError{fmt.Sprintf("no welcome within %s", timeout)}
	case f.Type != "welcome":
		c.Abort()
		return nil, f, &welcomeError{fmt.Sprintf("first frame was %q, not welcome", f.Type)}
	}
	return c, f, nil
}

// welcomeError is a connection that was upgraded but never welcomed.
type welcomeError struct{ reason string }

func (e *welcomeError) Error() string { return e.reason }

// errorClass turns an error into a short, stable key for counting failures by kind.
func errorClass(err error) string {
	var refused *wsclient.ErrRefused
	var welcome *welcomeError
	var netErr net.Error
	switch {
	case errors.As(err, &refused):
		return fmt.Sprintf("http %d", refused.Status)
	case errors.As(err, &welcome):
		return welcome.reason
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "no free local port (EADDRNOTAVAIL)"
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return "too many open files"
	case errors.Is(err, context.Canceled):
		return "interrupted"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &netErr) && netErr.Timeout():
		return "timeout"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed by the server"
	}
	s := err.Error()
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return s
}

// connectResult is the outcome of opening many connections at once.
type connectResult struct {
	conns    []*wsclient.Conn // nil where a connection failed
	welcomes []wsclient.Frame
	ok       int
	failures tally
	elapsed  time.Duration // from the first dial to the last welcome
	latency  Histogram     // from a dial to its welcome
}

// connectForRun connects the users of a dm or fanout run and records the result in res.
// It returns false when the run ends there, with res complete: a connection failed, or the
// run was interrupted.
func (n *nodes) connectForRun(ctx context.Context, cfg config, prog *progress, res *Result, ids []string, noun string, buffer int) (*connectResult, bool) {
	if err := n.prepare(ctx, ids); err != nil {
		res.Failures = append(res.Failures, err.Error())
		res.judge()
		return &connectResult{}, false
	}
	prog.printf("connecting %d %s to %d node(s) with %d dialers", len(ids), noun, len(cfg.urls), cfg.dialers)
	cr := n.connectAll(ctx, ids, cfg.dialers, buffer, cfg.dialTimeout, prog)
	res.Connect = cr.report()
	if cr.ok < len(ids) || ctx.Err() != nil {
		closeAll(cr.conns, cfg.dialers)
		res.Interrupted = ctx.Err() != nil
		res.judge()
		return cr, false
	}
	prog.printf("connected %d %s in %.2fs", cr.ok, noun, cr.elapsed.Seconds())
	return cr, true
}

// connectAll opens one connection per user from dialers concurrent dialers, user i on
// node i. It stops dialing when ctx ends.
func (n *nodes) connectAll(ctx context.Context, users []string, dialers, buffer int, timeout time.Duration, progress *progress) *connectResult {
	r := &connectResult{conns: make([]*wsclient.Conn, len(users)), welcomes: make([]wsclient.Frame, len(users))}
	var (
		next, ok atomic.Int64
		lastAt   atomic.Int64
		wg       sync.WaitGroup
	)
	start := time.Now()
	stopProgress := progress.every(time.Second, func(el time.Duration) string {
		return fmt.Sprintf("connected %d of %d (%d failed)", ok.Load(), len(users), r.failures.total())
	})
	for range min(dialers, len(users)) {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= len(users) {
					return
				}
				t0 := time.Now()
				c, w, err := n.dial(i, users[i], "", buffer, timeout)
				if err != nil {
					r.failures.add(errorClass(err))
					continue
				}
				now := time.Now()
				r.latency.Record(int64(now.Sub(t0)))
				r.conns[i], r.welcomes[i] = c, w
				ok.Add(1)
				atomicMax(&lastAt, int64(now.Sub(start)))
			}
		})
	}
	wg.Wait()
	stopProgress()
	r.ok = int(ok.Load())
	r.elapsed = time.Duration(lastAt.Load())
	if r.ok == 0 {
		r.elapsed = time.Since(start)
	}
	return r
}

// report summarises the connection phase. An interrupt leaves users not attempted, which
// count as neither welcomed nor failed.
func (r *connectResult) report() *ConnectReport {
	failed := r.failures.total()
	return &ConnectReport{
		Attempted: r.ok + int(failed),
		OK:        r.ok,
		Failed:    failed,
		Failures:  r.failures.snapshot(),
		Seconds:   round3(r.elapsed.Seconds()),
		PerSecond: perSecond(int64(r.ok), r.elapsed),
		Latency:   r.latency.Summary(),
	}
}

// closeAll closes every open connection from workers concurrent closers.
func closeAll(conns []*wsclient.Conn, workers int) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(workers, len(conns)) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(conns) {
					return
				}
				if c := conns[i]; c != nil {
					c.Close()
				}
			}
		})
	}
	wg.Wait()
}

// userIDs returns n user ids "<prefix>-<kind><index>", zero-padded so they sort.
func userIDs(prefix, kind string, n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("%s-%s%07d", prefix, kind, i)
	}
	return ids
}

// atomicMax raises a to v if v is larger.
func atomicMax(a *atomic.Int64, v int64) {
	for cur := a.Load(); v > cur && !a.CompareAndSwap(cur, v); cur = a.Load() {
	}
}
