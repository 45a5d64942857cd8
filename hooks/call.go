package hooks

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/switchboard-dev/switchboard/events"
)

// interpret turns a hook's answer into the hook's result, stored by the closure, and says
// how the call ended. body is read only for a 2xx (nil otherwise). A non-nil error is what
// the hook's caller gets.
type interpret func(status int, body []byte) (outcome, error)

// badLogEvery is how often a hook's bad answers are logged: they are a backend's bug
// its developer must hear of, but not once per call.
const badLogEvery = time.Minute

// call POSTs payload to e, signed, within the Timeout (slot included), and hands the answer
// to read. Every call is counted and timed.
func (c *Client) call(ctx context.Context, e *endpoint, payload []byte, read interpret) error {
	start := time.Now()
	o, err := c.exchange(ctx, e, payload, read)
	c.metrics.record(e, o, time.Since(start).Seconds())
	if o == outcomeBadAnswer {
		c.logBadAnswer(e, err)
	}
	return err
}

func (c *Client) exchange(ctx context.Context, e *endpoint, payload []byte, read interpret) (outcome, error) {
	rctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	select {
	case e.slots <- struct{}{}:
	default:
		select {
		case e.slots <- struct{}{}:
		case <-rctx.Done():
			if ctx.Err() != nil {
				return outcomeCanceled, unavailable(e, ctx.Err())
			}
			return outcomeBusy, unavailable(e, fmt.Errorf("all %d slots busy for %s", cap(e.slots), c.cfg.Timeout))
		}
	}
	defer func() { <-e.slots }()

	req, err := http.NewRequestWithContext(rctx, http.MethodPost, e.url, bytes.NewReader(payload))
	if err != nil {
		return outcomeBadAnswer, unavailable(e, err) // New checked the URL: not expected
	}
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", c.cfg.UserAgent)
	req.Header.Set(events.HeaderTimestamp, ts)
	if c.cfg.Secret != "" {
		req.Header.Set(events.HeaderSignature, events.Sign(c.cfg.Secret, ts, payload))
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return c.transportFailure(ctx, rctx, e, err)
	}
	defer resp.Body.Close()
	limited := io.LimitReader(resp.Body, c.cfg.MaxBodyBytes+1)
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		// Drained (within the limit) so that the connection can be reused; the body means
		// nothing.
		_, _ = io.Copy(io.Discard, limited)
		return read(resp.StatusCode, nil)
	}
	body, err := io.ReadAll(limited)
	if err != nil {
		return c.transportFailure(ctx, rctx, e, err)
	}
	if int64(len(body)) > c.cfg.MaxBodyBytes {
		return outcomeBadAnswer, unavailable(e, fmt.Errorf("answer body over %d bytes", c.cfg.MaxBodyBytes))
	}
	return read(resp.StatusCode, body)
}

// transportFailure classifies a failed request or body read: the caller's context ended
// (canceled), the Timeout passed (timeout), or the backend could not be reached or broke
// the connection (unreachable).
func (c *Client) transportFailure(ctx, rctx context.Context, e *endpoint, err error) (outcome, error) {
	switch {
	case ctx.Err() != nil:
		return outcomeCanceled, unavailable(e, ctx.Err())
	case rctx.Err() != nil:
		return outcomeTimeout, unavailable(e, fmt.Errorf("no answer within %s", c.cfg.Timeout))
	}
	return outcomeUnreachable, unavailable(e, err)
}

// unavailable wraps ErrUnavailable with the hook and why.
func unavailable(e *endpoint, why error) error {
	return fmt.Errorf("%w: %s hook: %w", ErrUnavailable, e.hook, why)
}

// badAnswer is the error of an answer the hook cannot use.
func badAnswer(e *endpoint, format string, args ...any) (outcome, error) {
	return outcomeBadAnswer, unavailable(e, fmt.Errorf("bad answer: "+format, args...))
}

// unexpectedStatus is the error of a status the hook does not define.
func unexpectedStatus(e *endpoint, status int) (outcome, error) {
	return statusOutcome(status), unavailable(e, fmt.Errorf("answered %d %s", status, http.StatusText(status)))
}

func (c *Client) logBadAnswer(e *endpoint, err error) {
	now := time.Now().UnixNano()
	last := e.warned.Load()
	if now-last < int64(badLogEvery) || !e.warned.CompareAndSwap(last, now) {
		return
	}
	c.cfg.Logger.Warn("hook answered something it may not (logged at most once a minute; see switchboard_hook_calls_total{outcome=\"bad_answer\"})",
		"hook", string(e.hook), "err", err)
}
