package service

import (
	"context"
	"crypto/subtle"
	"errors"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/switchboard-dev/switchboard/hooks"
	"github.com/switchboard-dev/switchboard/subscriptions"
	"github.com/switchboard-dev/switchboard/tokens"
)

func errUnauthorized(msg string) *apiError {
	return &apiError{status: http.StatusUnauthorized, code: codeUnauthorized, message: msg}
}

// identity is who a connection is and what it may do, until when: from a token, from the
// connect hook, or in dev mode from ?user=.
type identity struct {
	user   string
	grants tokens.Grants
	// exp ends the connection (zero: never); grace is how long after exp it is closed, the
	// clock skew a token is allowed (none for the connect hook's expires_at).
	exp   time.Time
	grace time.Duration
}

func (s *Server) tokenIdentity(c *tokens.Claims) *identity {
	return &identity{user: c.Subject, grants: c.Grants, exp: c.Expires, grace: s.cfg.Tokens.Leeway()}
}

// authenticate returns who a WebSocket request is for: the claims of its token; without a
// token, what the connect hook says; in dev mode (no token keys, no connect hook) a user
// named by its ?user= parameter, with no grants (dev mode allows everything).
func (s *Server) authenticate(r *http.Request) (*identity, error) {
	if s.devMode() {
		user := r.URL.Query().Get("user")
		if user == "" {
			return nil, errUnauthorized("dev mode: pass ?user=ID")
		}
		if !subscriptions.ValidID(user) {
			return nil, subscriptions.ErrInvalidID
		}
		return &identity{user: user}, nil
	}
	raw := r.URL.Query().Get("token")
	if raw == "" && s.cfg.Tokens != nil {
		raw = bearer(r)
	}
	switch {
	case raw != "" && s.cfg.Tokens != nil:
		claims, err := s.verifyToken(r.Context(), raw)
		if err != nil {
			return nil, err
		}
		return s.tokenIdentity(claims), nil
	case raw != "":
		return nil, errUnauthorized("this server takes no tokens (no token keys); it asks its backend who you are")
	case s.hookOn(hooks.HookConnect):
		return s.askConnectHook(r)
	default:
		return nil, errUnauthorized("a token is required (?token= or Authorization: Bearer)")
	}
}

// askConnectHook asks the backend who a request without a token is. The backend's 401 or
// 403 refuses the upgrade with that status; no usable answer refuses it with 503.
func (s *Server) askConnectHook(r *http.Request) (*identity, error) {
	ans, err := s.cfg.Hooks.Connect(r.Context(), hooks.NewConnectRequest(r, remoteAddr(s.cfg.Limiter.clientAddr(r))))
	if err != nil {
		return nil, err
	}
	if !ans.ExpiresAt.IsZero() && !ans.ExpiresAt.After(time.Now()) {
		// Opened, it would be closed at once, and its client would reconnect in a loop.
		return nil, errUnauthorized("the backend's answer expired already (expires_at is past)")
	}
	return &identity{user: ans.User, grants: ans.Grants, exp: ans.ExpiresAt}, nil
}

// verifyToken verifies a token now and checks that it was not revoked.
func (s *Server) verifyToken(ctx context.Context, raw string) (*tokens.Claims, error) {
	claims, err := s.cfg.Tokens.Verify(ctx, raw, time.Now())
	if err != nil {
		var te *tokens.Error
		if errors.As(err, &te) {
			return nil, errUnauthorized(te.Message)
		}
		return nil, err
	}
	if err := s.checkRevocation(ctx, claims); err != nil {
		return nil, err
	}
	return claims, nil
}

// checkRevocation refuses a token issued before a revocation of its user's tokens (DELETE
// /v1/users/{user}/connections?revoke=true), or one without iat while a revocation stands.
// It costs a Redis round trip per token connect; without an answer it refuses (fail
// closed): a revoked token must not get through because Redis is down.
func (s *Server) checkRevocation(ctx context.Context, claims *tokens.Claims) error {
	before, revoked, err := s.hub.TokensRevokedBefore(ctx, claims.Subject)
	if err != nil {
		return &apiError{status: http.StatusServiceUnavailable, code: codeUnavailable,
			message: "cannot check whether the token was revoked: redis is unavailable"}
	}
	if !revoked {
		return nil
	}
	if claims.IssuedAt.IsZero() {
		return errUnauthorized("token revoked: this user's tokens issued before a revocation are refused, and this one has no iat")
	}
	if claims.IssuedAt.Before(before) {
		return errUnauthorized("token revoked: it was issued before this user's tokens were revoked")
	}
	return nil
}

// bearer returns the credentials of an "Authorization: Bearer" header, or "".
func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// requireKey refuses requests without "Authorization: Bearer <key>"; an empty key leaves
// the routes open (dev mode). Keys are compared in constant time.
func (s *Server) requireKey(key string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		if key == "" {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			got := bearer(r)
			if subtle.ConstantTimeCompare([]byte(got), []byte(key)) != 1 {
				writeError(w, errUnauthorized("a valid key is required (Authorization: Bearer <key>)"))
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// originAllowed protects against cross-site WebSocket hijacking: a browser's Origin must be
// the server's own or one of AllowedOrigins. Requests without Origin are not from browsers.
func (s *Server) originAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	if len(s.cfg.AllowedOrigins) == 0 {
		u, err := url.Parse(origin)
		return err == nil && strings.EqualFold(u.Host, r.Host)
	}
	for _, o := range s.cfg.AllowedOrigins {
		if o == "*" || strings.EqualFold(strings.TrimSuffix(o, "/"), origin) {
			return true
		}
	}
	return false
}

// remoteAddr is the client's address for the connect hook ("" when unknown).
func remoteAddr(ip netip.Addr) string {
	if !ip.IsValid() {
		return ""
	}
	return ip.String()
}
