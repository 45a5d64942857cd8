package service

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/go-json-experiment/json/jsontext"
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
	claims, err := s.verifyToken(raw, time.Now())
	if err != nil {
		return "", err
	}
	user, _ := claims.GetSubject()
	if err := s.checkRevocation(r.Context(), user, claims); err != nil {
		return "", err
	}
	return user, nil
}

// verifyToken checks a token's form, signature and claims at now, and returns its claims.
// The claims are a map, matched by exact name: encoding/json would let "SUB" or "Exp" fill
// the registered claims of a struct, and checkTokenJSON refuses tokens that try.
func (s *Server) verifyToken(raw string, now time.Time) (jwt.MapClaims, error) {
	if err := checkTokenJSON(raw); err != nil {
		return nil, err
	}
	claims := jwt.MapClaims{}
	// The algorithm follows the key: HS256 only, whatever the header asks for.
	_, err := jwt.ParseWithClaims(raw, claims, func(*jwt.Token) (any, error) { return s.cfg.JWTSecret, nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithLeeway(tokenLeeway),
		jwt.WithExpirationRequired(), jwt.WithIssuedAt(), jwt.WithTimeFunc(func() time.Time { return now }))
	switch {
	case err == nil:
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return nil, errUnauthorized("invalid token: exp is required")
	case errors.Is(err, jwt.ErrTokenExpired):
		return nil, errUnauthorized("token expired")
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return nil, errUnauthorized("token not valid yet (nbf)")
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return nil, errUnauthorized("invalid token: iat is in the future")
	default:
		return nil, errUnauthorized("invalid token")
	}
	sub, err := claims.GetSubject()
	if err != nil || !subscriptions.ValidID(sub) {
		return nil, errUnauthorized("invalid token: sub is not a valid user id")
	}
	// A token that lives longer than the maximum would outlive a revocation's record.
	exp, _ := claims.GetExpirationTime()
	maxLife := s.cfg.MaxTokenLifetime
	if exp.Sub(now) > maxLife+tokenLeeway {
		return nil, errUnauthorized(fmt.Sprintf("invalid token: exp is more than %v away (the maximum token lifetime)", maxLife))
	}
	if iat, _ := claims.GetIssuedAt(); iat != nil && exp.Sub(iat.Time) > maxLife {
		return nil, errUnauthorized(fmt.Sprintf("invalid token: exp is more than %v after iat (the maximum token lifetime)", maxLife))
	}
	return claims, nil
}

// checkRevocation refuses a token issued before a revocation of its user's tokens (DELETE
// /v1/users/{user}/connections?revoke=true), or one without iat while a revocation stands.
// It costs a Redis round trip per token connect; without an answer it refuses (fail
// closed): a revoked token must not get through because Redis is down.
func (s *Server) checkRevocation(ctx context.Context, user string, claims jwt.MapClaims) error {
	before, revoked, err := s.hub.TokensRevokedBefore(ctx, user)
	if err != nil {
		return &apiError{status: http.StatusServiceUnavailable, code: codeUnavailable,
			message: "cannot check whether the token was revoked: redis is unavailable"}
	}
	if !revoked {
		return nil
	}
	iat, _ := claims.GetIssuedAt()
	if iat == nil {
		return errUnauthorized("token revoked: this user's tokens issued before a revocation are refused, and this one has no iat")
	}
	if iat.Before(before) {
		return errUnauthorized("token revoked: it was issued before this user's tokens were revoked")
	}
	return nil
}

// registeredTokenNames are the names of the JOSE header (RFC 7515 §4.1) and the registered
// claims (RFC 7519 §4.1). A name that differs from one of them only in case is refused: Go's
// encoding/json matches names case-insensitively, so somewhere "SUB" could stand in for sub.
var registeredTokenNames = [...]string{
	"alg", "jku", "jwk", "kid", "x5u", "x5c", "x5t", "x5t#S256", "typ", "cty", "crit",
	"iss", "sub", "aud", "exp", "nbf", "iat", "jti",
}

// checkTokenJSON refuses a token whose header or claims are not one JSON object with
// unique names, in UTF-8, none of them a case variant of a registered name: with duplicate
// names, which one counts depends on the parser (encoding/json takes the last).
func checkTokenJSON(raw string) error {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return errUnauthorized("invalid token")
	}
	for i, part := range parts[:2] {
		what := [...]string{"header", "claim"}[i]
		b, err := base64.RawURLEncoding.DecodeString(part)
		if err != nil {
			return errUnauthorized("invalid token")
		}
		// jsontext refuses duplicate names and invalid UTF-8 by default.
		dec := jsontext.NewDecoder(bytes.NewReader(b))
		if tok, err := dec.ReadToken(); err != nil || tok.Kind() != '{' {
			return errUnauthorized("invalid token: the " + what + "s are not a JSON object")
		}
		for dec.PeekKind() == '"' {
			tok, err := dec.ReadToken()
			if err != nil {
				return tokenJSONError(what, err)
			}
			name := tok.String()
			for _, reg := range registeredTokenNames {
				if name != reg && strings.EqualFold(name, reg) {
					return errUnauthorized(fmt.Sprintf("invalid token: %s %q differs from %q only in case", what, name, reg))
				}
			}
			if err := dec.SkipValue(); err != nil {
				return tokenJSONError(what, err)
			}
		}
		if _, err := dec.ReadToken(); err != nil {
			return tokenJSONError(what, err)
		}
		if _, err := dec.ReadToken(); err != io.EOF {
			return errUnauthorized("invalid token: the " + what + "s have data after their JSON object")
		}
	}
	return nil
}

func tokenJSONError(what string, err error) error {
	if errors.Is(err, jsontext.ErrDuplicateName) {
		return errUnauthorized("invalid token: a " + what + " name appears twice")
	}
	return errUnauthorized("invalid token: the " + what + "s are not valid JSON")
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
