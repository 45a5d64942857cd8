package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// maxAnswerBytes bounds the answer body the client reads: a history page of 1000 messages
// of the largest payload fits.
const maxAnswerBytes = 128 << 20

// Client calls one Switchboard deployment's HTTP API. It is safe for concurrent use.
type Client struct {
	base    string // scheme://host[:port][/prefix], without a trailing slash
	hc      *http.Client
	auth    string // "Bearer <key>", or ""
	retries int
	backoff time.Duration
	agent   string
}

// Option configures a Client.
type Option func(*Client)

// WithAPIKey sends key as "Authorization: Bearer <key>" (--api-key). Without it the client
// suits a server whose /v1 is open (dev mode).
func WithAPIKey(key string) Option {
	return func(c *Client) { c.auth = "Bearer " + key }
}

// WithHTTPClient makes the client send through hc: its transport, timeout, proxies and TLS
// settings. Default: http.DefaultClient.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) { c.hc = hc }
}

// WithRetries sets how often an idempotent call is retried (default 2, 0 turns retries off)
// and the first wait between attempts (default 100ms), which doubles with each retry, with
// jitter, unless the answer's Retry-After says more. Sends are retried too, under the
// Idempotency-Key each logical send carries, except ephemeral ones.
func WithRetries(n int, backoff time.Duration) Option {
	return func(c *Client) { c.retries, c.backoff = max(n, 0), backoff }
}

// WithUserAgent sets the User-Agent header. Default "switchboard-go-client".
func WithUserAgent(ua string) Option {
	return func(c *Client) { c.agent = ua }
}

// New returns a client of the deployment at baseURL (http or https, with an optional path
// prefix, such as "https://sb.internal" or "http://127.0.0.1:8080/switchboard").
func New(baseURL string, opts ...Option) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("switchboard: base URL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("switchboard: base URL %q: want http(s)://host[:port][/prefix]", baseURL)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("switchboard: base URL %q: want no query, fragment or user info", baseURL)
	}
	c := &Client{base: strings.TrimSuffix(u.Scheme+"://"+u.Host+u.EscapedPath(), "/"), hc: http.DefaultClient, retries: 2, backoff: 100 * time.Millisecond, agent: "switchboard-go-client"}
	for _, o := range opts {
		o(c)
	}
	if c.backoff <= 0 {
		c.backoff = 100 * time.Millisecond
	}
	return c, nil
}

// call is one API call: its method, path (already escaped), query, payload, and whether
// repeating it is harmless.
type call struct {
	method     string
	path       string
	query      url.Values
	payload    *Payload
	idempotent bool
	// idemKey, when set, is sent as Idempotency-Key by every attempt: the server answers a
	// repeat with the first answer and delivers nothing again, so the send is retried too.
	idemKey string
}

// do makes the call, retrying it when it is idempotent and the failure is temporary, and
// returns the answer's status and body. A refusal (4xx, 5xx) is returned as *Error.
func (c *Client) do(ctx context.Context, cl call) (int, []byte, error) {
	if cl.payload != nil && cl.payload.err != nil {
		return 0, nil, cl.payload.err
	}
	target := c.base + cl.path
	if len(cl.query) > 0 {
		target += "?" + cl.query.Encode()
	}
	wait := c.backoff
	for attempt := 0; ; attempt++ {
		status, body, err := c.once(ctx, cl, target)
		if err == nil || !(cl.idempotent || cl.idemKey != "") || attempt >= c.retries || !retryable(err) || ctx.Err() != nil {
			return status, body, err
		}
		d := wait/2 + rand.N(wait)
		var e *Error
		if errors.As(err, &e) && e.RetryAfter > d {
			d = e.RetryAfter
		}
		wait *= 2
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return status, body, err
		case <-t.C:
		}
	}
}

// retryable reports whether an idempotent call that failed with err may be repeated: the
// server or a proxy was unavailable, or the request did not get an answer.
func retryable(err error) bool {
	var e *Error
	if errors.As(err, &e) {
		switch e.Status {
		case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return true
		case http.StatusConflict: // a keyed send still under way: its answer comes later
			return e.Code == CodeIdempotencyInProgress
		}
		return false
	}
	return !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}

// once makes one attempt of a call.
func (c *Client) once(ctx context.Context, cl call, target string) (int, []byte, error) {
	var body io.Reader
	if cl.payload != nil {
		body = bytes.NewReader(cl.payload.body)
	}
	req, err := http.NewRequestWithContext(ctx, cl.method, target, body)
	if err != nil {
		return 0, nil, fmt.Errorf("switchboard: %w", err)
	}
	if cl.payload != nil && cl.payload.contentType != "" {
		req.Header.Set("Content-Type", cl.payload.contentType)
	}
	if c.auth != "" {
		req.Header.Set("Authorization", c.auth)
	}
	if cl.idemKey != "" {
		req.Header.Set("Idempotency-Key", cl.idemKey)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.agent)
	res, err := c.hc.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("switchboard: %s %s: %w", cl.method, cl.path, err)
	}
	defer res.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(res.Body, maxAnswerBytes))
	if err != nil {
		return 0, nil, fmt.Errorf("switchboard: %s %s: reading the answer: %w", cl.method, cl.path, err)
	}
	if res.StatusCode >= 400 {
		return res.StatusCode, answer, errorFrom(res.StatusCode, res.Header, answer)
	}
	return res.StatusCode, answer, nil
}

// seg escapes one path segment (an id): a character the id pattern refuses cannot change
// which endpoint is called, and the server answers invalid_id.
func seg(id string) string { return url.PathEscape(id) }
