package service

import (
	"crypto/subtle"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/switchboard-dev/switchboard/subscriptions"
)

// tokenLeeway tolerates clock skew between the token issuer and this node.
const tokenLeeway = 30 * time.Second

func errUnauthorized(msg string) *apiError {
	return &apiError{status: http.StatusUnauthorized, code: codeUnauthorized, message: msg}
}

// authenticate returns the user a WebSocket request is for: the sub of its HS256 token, or
// in dev mode (no JWT secret) its ?user= parameter.
func (s *Server) authenticate(r *http.Request) (string, error) {
	if len(s.cfg.JWTSecret) == 0 {
		user := r.URL.Query().Get("user")
		if user == "" {
			return "", errUnauthorized("dev mode: pass ?user=ID")
		}
		if !subscriptions.ValidID(user) {
			return "", subscriptions.ErrInvalidID
		}
		return user, nil
	}
	raw := r.URL.Query().Get("token")
	if raw == "" {
		raw = bearer(r)
	}
	if raw == "" {
		return "", errUnauthorized("a token is required (?token= or Authorization: Bearer)")
	}
	var claims jwt.RegisteredClaims
	_, err := jwt.ParseWithClaims(raw, &claims, func(*jwt.Token) (any, error) { return s.cfg.JWTSecret, nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithLeeway(tokenLeeway))
	if err != nil {
		return "", errUnauthorized("invalid token")
	}
	if !subscriptions.ValidID(claims.Subject) {
		return "", errUnauthorized("invalid token: sub is not a valid user id")
	}
	return claims.Subject, nil
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
