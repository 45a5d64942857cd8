package service

import (
	"context"
	"math"
	"net/http"
	"sync"
	"time"

	"github.com/switchboard-dev/switchboard/tokens"
)

// expiringNotice is how long before its token's exp a connection is told to refresh it;
// a token with less than twice that left is told halfway through what is left, so that a
// client whose tokens are short-lived refreshes at a pace its token lifetime sets rather
// than at once, again and again.
const expiringNotice = 30 * time.Second

// closeExpired closes a connection whose token expired without a refresh: the client gets
// a fresh token and reconnects with since.
const closeExpired = 4003

var disconnectExpired = disconnect{closeExpired, "token expired; reconnect with a fresh token", "token_expired"}

// perm is what a connection may do: in token mode its token's grants, checked on every
// join and direct message; in dev mode nothing is checked. It is read and replaced only
// on the connection's read loop goroutine (dispatch, refresh).
type perm struct {
	checked bool
	grants  tokens.Grants
}

// permOf returns the permissions of id: checked unless the node is in dev mode.
func (s *Server) permOf(id *identity) perm {
	return perm{checked: !s.devMode(), grants: id.grants}
}

// expiry ends a connection with its token: it sends the expiring frame expiringNotice
// before exp and closes the connection with 4003 at exp plus a grace (for a token, the
// clock skew it is allowed at connect; none for the connect hook's expires_at), unless a
// refresh moved exp first. Its timer runs on a goroutine of its own, so it holds mu.
type expiry struct {
	mu      sync.Mutex
	timer   *time.Timer
	gen     uint64 // the schedule the timer belongs to; a refresh or stop makes it stale
	stopped bool
}

// scheduleExpiry (re)starts c's expiry for an identity that expires at exp, closed grace
// later; a zero exp (dev mode, a connect hook's answer without expires_at) never expires.
func (c *client) scheduleExpiry(exp time.Time, grace time.Duration) {
	if exp.IsZero() {
		return
	}
	e := &c.expiry
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stopped {
		return
	}
	if e.timer != nil {
		e.timer.Stop()
	}
	e.gen++
	gen, closeAt := e.gen, exp.Add(grace)
	warned := false
	var step func()
	step = func() {
		e.mu.Lock()
		defer e.mu.Unlock()
		if e.stopped || e.gen != gen {
			return
		}
		now := time.Now()
		if !now.Before(closeAt) {
			e.stopped = true
			c.close(disconnectExpired)
			return
		}
		if !warned {
			warned = true
			in := int(math.Ceil(max(exp.Sub(now), 0).Seconds()))
			c.send(encodeFrame(expiringFrame{Type: "expiring", In: in}))
		}
		e.timer = time.AfterFunc(closeAt.Sub(now), step)
	}
	notice := min(expiringNotice, time.Until(exp)/2)
	e.timer = time.AfterFunc(time.Until(exp.Add(-notice)), step)
}

// stopExpiry ends c's expiry for good: the connection is closing.
func (c *client) stopExpiry() {
	e := &c.expiry
	e.mu.Lock()
	defer e.mu.Unlock()
	e.stopped = true
	if e.timer != nil {
		e.timer.Stop()
	}
}

// refresh replaces the connection's token: the new one must verify, not be revoked, and be
// for the same user; its grants replace the old ones and its exp the old expiry. A refusal
// (forbidden) leaves the old token in force.
func (s *Server) refresh(ctx context.Context, c *client, cmd refreshCmd) error {
	if s.cfg.Tokens == nil {
		return errBadRequest(codeBadRequest, "this server takes no tokens (no token keys), so there is none to refresh")
	}
	claims, err := s.verifyToken(ctx, cmd.token)
	if err != nil {
		ae := classify(err)
		if ae.status == http.StatusUnauthorized {
			return errForbidden("refresh refused: " + ae.message + "; the current token stays until it expires")
		}
		return err
	}
	if claims.Subject != c.user {
		return errForbidden("refresh refused: the token is for another user; the current token stays until it expires")
	}
	id := s.tokenIdentity(claims)
	c.perm = s.permOf(id)
	c.scheduleExpiry(id.exp, id.grace)
	return nil
}
