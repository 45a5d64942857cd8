package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"time"

	"github.com/switchboard-dev/switchboard/events"
)

// Body limits. A hook request carries at most one client payload (Switchboard's
// --max-message-bytes, 64 KiB by default); an event request up to 100 events of that size.
const (
	maxHookBody  = 1 << 20
	maxEventBody = 8 << 20
)

// Config is what a Backend needs. Zero values mean the defaults named on each field.
type Config struct {
	// Secret is Switchboard's --webhook-secret: every hook and event request must be signed
	// with it. Required.
	Secret string
	// SessionKey signs the session cookies. Default: a key derived from Secret, so that the
	// example runs with one flag; a real app keeps its own session secret (or store).
	SessionKey []byte
	// SessionTTL is how long a login lasts. Default 1 h.
	SessionTTL time.Duration
	// SecureCookies marks the session cookie Secure (HTTPS only). Off by default so that the
	// example works on http://127.0.0.1; turn it on in production.
	SecureCookies bool
	// Tolerance is how far a request's signed timestamp may be from now. Default 5 min.
	Tolerance time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger receives what the backend does. Default slog.Default().
	Logger *slog.Logger
}

// Backend is an example application backend for Switchboard: a cookie login, the connect,
// authorize and rpc hooks, and the events webhook. It is an http.Handler, so it is tested
// without a network and mounted wherever the app likes.
type Backend struct {
	cfg    Config
	log    *slog.Logger
	mux    *http.ServeMux
	teams  map[string][]string // team → members
	orders map[string]order    // order id → order
	seen   *dedupe             // event ids already handled
}

// New builds a Backend with the example's fixed teams and orders.
func New(cfg Config) (*Backend, error) {
	if cfg.Secret == "" {
		// Without a secret anyone who can reach the hooks could log in as anybody.
		return nil, errors.New("a secret is required (Switchboard's --webhook-secret)")
	}
	if len(cfg.SessionKey) == 0 {
		cfg.SessionKey = deriveSessionKey(cfg.Secret)
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = time.Hour
	}
	if cfg.Tolerance <= 0 {
		cfg.Tolerance = 5 * time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	b := &Backend{
		cfg:    cfg,
		log:    cfg.Logger,
		mux:    http.NewServeMux(),
		teams:  exampleTeams(),
		orders: exampleOrders(),
		seen:   newDedupe(10000),
	}
	b.mux.HandleFunc("GET /login", b.login)
	b.mux.HandleFunc("POST /logout", b.logout)
	b.mux.HandleFunc("POST /hooks/connect", b.verified(maxHookBody, b.connect))
	b.mux.HandleFunc("POST /hooks/authorize", b.verified(maxHookBody, b.authorize))
	b.mux.HandleFunc("POST /hooks/rpc", b.verified(maxHookBody, b.rpc))
	b.mux.HandleFunc("POST /events", b.verified(maxEventBody, b.events))
	return b, nil
}

// ServeHTTP routes a request to its handler.
func (b *Backend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.mux.ServeHTTP(w, r)
}

// deriveSessionKey makes a session key from the webhook secret, distinct from it, so that a
// cookie can never double as a signature of a Switchboard request.
func deriveSessionKey(secret string) []byte {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte("example session cookies"))
	return mac.Sum(nil)
}

// verified wraps a handler of Switchboard's requests: it reads the body (at most limit
// bytes) and checks its signature with the project's own events.Verify before anything
// else looks at it. A bad, missing or stale signature is 401 and the body is ignored.
func (b *Backend) verified(limit int64, next func(w http.ResponseWriter, r *http.Request, body []byte)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				writeError(w, http.StatusRequestEntityTooLarge, "too_large", "the body is over the limit")
				return
			}
			writeError(w, http.StatusBadRequest, "bad_body", "cannot read the body")
			return
		}
		if err := events.Verify(b.cfg.Secret, r.Header, body, b.cfg.Now(), b.cfg.Tolerance); err != nil {
			b.log.Warn("refused an unsigned or badly signed request", "path", r.URL.Path, "err", err)
			writeError(w, http.StatusUnauthorized, "bad_signature", "the request is not signed by Switchboard")
			return
		}
		next(w, r, body)
	}
}

// idPattern is Switchboard's pattern for user ids and room names.
var idPattern = regexp.MustCompile(`^[A-Za-z0-9._@+-]{1,128}$`)

func validID(s string) bool { return idPattern.MatchString(s) }

// writeJSON answers v as JSON with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // the peer went away: nothing left to tell it
}

// writeError answers {"error":{"code","message"}}, the shape Switchboard's own API uses.
func writeError(w http.ResponseWriter, status int, code, msg string) {
	type body struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	writeJSON(w, status, map[string]body{"error": {Code: code, Message: msg}})
}
