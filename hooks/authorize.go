package hooks

import (
	"context"
	"encoding/json"
	"math"
	"time"
)

// AuthorizeRequest is one question to the authorize hook, and its body: may User do Action
// (ActionJoin with Room, or ActionSend with To)? It has the fields and JSON of
// service.AuthorizeRequest, so one converts to the other.
type AuthorizeRequest struct {
	Action string `json:"action"`
	User   string `json:"user"`
	Room   string `json:"room,omitempty"`
	To     string `json:"to,omitempty"`
}

// The actions the authorize hook is asked about.
const (
	ActionJoin = "join"
	ActionSend = "send"
)

// authorizeAnswer is the body of a 2xx answer. Allow is required: an answer that does not
// say is a backend's bug, reported as unavailable rather than guessed at.
type authorizeAnswer struct {
	Allow  *bool   `json:"allow"`
	CacheS float64 `json:"cache_s"`
}

// flight is an authorize call in progress, which identical questions wait for.
type flight struct {
	done  chan struct{}
	allow bool
	err   error
	// abandoned means the call ended because its caller's context did, which says nothing
	// about the backend: whoever waited asks again.
	abandoned bool
	waiters   int // guarded by the Client's mu; tests read it
}

// Authorize asks the authorize hook whether req is allowed: (true, nil) allows, (false,
// nil) refuses (a 2xx {"allow":false} or a 4xx), and an error refuses too — ErrUnavailable
// for no usable answer (fail closed), ErrNotEnabled without an AuthorizeURL. Answers with
// cache_s are reused from this node's cache; a question asked while the same one is in
// flight waits for that call's answer.
func (c *Client) Authorize(ctx context.Context, req AuthorizeRequest) (bool, error) {
	e := c.hooks[0]
	if e.url == "" {
		return false, ErrNotEnabled
	}
	for {
		c.mu.Lock()
		if allow, ok := c.cache.get(req, c.cfg.Now()); ok {
			c.mu.Unlock()
			c.metrics.cacheHits.Inc()
			return allow, nil
		}
		if f := c.flights[req]; f != nil {
			f.waiters++
			c.mu.Unlock()
			select {
			case <-f.done:
				if f.abandoned {
					continue
				}
				return f.allow, f.err
			case <-ctx.Done():
				return false, unavailable(e, ctx.Err())
			}
		}
		f := &flight{done: make(chan struct{})}
		c.flights[req] = f
		c.mu.Unlock()

		var ttl time.Duration
		f.allow, ttl, f.err = c.ask(ctx, e, req)
		f.abandoned = f.err != nil && ctx.Err() != nil
		c.mu.Lock()
		delete(c.flights, req)
		if f.err == nil && ttl > 0 {
			now := c.cfg.Now()
			c.cache.put(req, f.allow, now.Add(ttl), now)
		}
		c.mu.Unlock()
		close(f.done)
		return f.allow, f.err
	}
}

// ask calls the hook once and returns its answer and how long it may be cached (0: not).
func (c *Client) ask(ctx context.Context, e *endpoint, req AuthorizeRequest) (allow bool, ttl time.Duration, err error) {
	payload, err := json.Marshal(req)
	if err != nil {
		return false, 0, err // strings always encode; kept for the type's sake
	}
	err = c.call(ctx, e, payload, func(status int, body []byte) (outcome, error) {
		switch {
		case status >= 400 && status <= 499:
			return outcome4xx, nil // a refusal, not cached: it carries no cache_s
		case status < 200 || status > 299:
			return unexpectedStatus(e, status)
		}
		var a authorizeAnswer
		if err := json.Unmarshal(body, &a); err != nil {
			return badAnswer(e, "%v", err)
		}
		if a.Allow == nil {
			return badAnswer(e, `no "allow"`)
		}
		allow, ttl = *a.Allow, cacheTTL(a.CacheS)
		if !allow {
			return outcomeDenied, nil
		}
		return outcomeOK, nil
	})
	if err != nil {
		return false, 0, err
	}
	return allow, ttl, nil
}

// cacheTTL is how long an answer with cache_s may be cached: at most MaxCacheSeconds, and
// not at all for zero, a negative or a fraction of a millisecond.
func cacheTTL(seconds float64) time.Duration {
	if !(seconds > 0) { // NaN too, though JSON has none
		return 0
	}
	seconds = math.Min(seconds, MaxCacheSeconds)
	return time.Duration(seconds * float64(time.Second)).Truncate(time.Millisecond)
}
