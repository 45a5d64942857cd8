package tokens

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-dev/switchboard/subscriptions"
)

// Config says which keys verify tokens and what a token must say. Zero values mean the
// defaults named on each field. Any key turns token mode on; several may be set together,
// and a token verifies under any of them whose algorithm is the token's alg.
type Config struct {
	// Secret verifies HS256 tokens, and only those. Empty: no HS256.
	Secret []byte
	// PublicKeyPEM holds one or more PEM public keys (PUBLIC KEY, RSA PUBLIC KEY or
	// CERTIFICATE blocks): an RSA key of at least 2048 bits verifies RS256, an EC P-256 key
	// ES256, an Ed25519 key EdDSA. Empty: none.
	PublicKeyPEM []byte
	// JWKSURL is the URL of a JWK Set (an identity provider's jwks_uri); a token's kid
	// picks its key. New fetches it and fails if it cannot; Run refetches it. Empty: none.
	JWKSURL string
	// JWKSRefresh is how often Run refetches the JWKS. Default 1h.
	JWKSRefresh time.Duration
	// JWKSMinRefetch is the least time between two fetches caused by unknown kids; a
	// token with an unknown kid inside it is refused without waiting. Default 10s.
	JWKSMinRefetch time.Duration
	// JWKSTimeout bounds one JWKS fetch. Default 10s.
	JWKSTimeout time.Duration
	// HTTPClient fetches the JWKS. Default a client of its own.
	HTTPClient *http.Client
	// Registerer, when set, gets the JWKS metrics: switchboard_jwks_refresh_failures_total
	// and switchboard_jwks_keys.
	Registerer prometheus.Registerer
	// Logger reports JWKS fetches that fail. Default slog.Default().
	Logger *slog.Logger

	// Issuer and Audience, when set, must match the token's iss and one of its aud.
	Issuer, Audience string
	// UserClaim names the claim that holds the user id. Default "sub". Identity providers
	// whose sub is not a valid id (Auth0's "auth0|…") put one in a custom claim.
	UserClaim string
	// MaxLifetime is the longest a token may live: one whose exp is further than this from
	// now or from its iat is refused. Default 24h.
	MaxLifetime time.Duration
	// Leeway tolerates clock skew between the token's issuer and this node, on exp, nbf
	// and iat. Default 30s.
	Leeway time.Duration
}

// Enabled reports whether any key is configured: token mode. Without one the server is in
// dev mode.
func (c Config) Enabled() bool {
	return len(c.Secret) > 0 || len(c.PublicKeyPEM) > 0 || c.JWKSURL != ""
}

func (c *Config) setDefaults() {
	if c.MaxLifetime <= 0 {
		c.MaxLifetime = 24 * time.Hour
	}
	if c.Leeway <= 0 {
		c.Leeway = 30 * time.Second
	}
	if c.JWKSRefresh <= 0 {
		c.JWKSRefresh = time.Hour
	}
	if c.JWKSMinRefetch <= 0 {
		c.JWKSMinRefetch = 10 * time.Second
	}
	if c.JWKSTimeout <= 0 {
		c.JWKSTimeout = 10 * time.Second
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: c.JWKSTimeout}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Error is a token refusal; its message says what is wrong, for the client.
type Error struct{ Message string }

func (e *Error) Error() string { return e.Message }

func refuse(msg string) error { return &Error{Message: msg} }

// Verifier verifies tokens under the configured keys. It is safe for concurrent use.
type Verifier struct {
	cfg Config
	// static are the secret and the PEM keys by the one algorithm each verifies.
	static map[string][]jwt.VerificationKey
	// jwks is the JWK Set's keys; nil without a JWKS URL.
	jwks *jwks
	// methods are the algorithms some key verifies; a token naming another is refused
	// before any key is looked at.
	methods []string
}

// New returns a Verifier for cfg. With a JWKS URL it fetches the set, bounded by ctx and
// the JWKS timeout, and fails if it cannot; it starts no goroutine (Run refreshes).
func New(ctx context.Context, cfg Config) (*Verifier, error) {
	cfg.setDefaults()
	if !cfg.Enabled() {
		return nil, errors.New("tokens: no key configured")
	}
	v := &Verifier{cfg: cfg, static: map[string][]jwt.VerificationKey{}}
	if len(cfg.Secret) > 0 {
		v.static["HS256"] = []jwt.VerificationKey{cfg.Secret}
	}
	if len(cfg.PublicKeyPEM) > 0 {
		keys, err := parsePublicKeys(cfg.PublicKeyPEM)
		if err != nil {
			return nil, fmt.Errorf("tokens: the public key: %w", err)
		}
		for alg, ks := range keys {
			v.static[alg] = append(v.static[alg], ks...)
		}
	}
	for alg := range v.static {
		v.methods = append(v.methods, alg)
	}
	if cfg.JWKSURL != "" {
		failures, keyCount, err := jwksMetrics(cfg.Registerer)
		if err != nil {
			return nil, err
		}
		if v.jwks, err = newJWKS(ctx, cfg, failures, keyCount); err != nil {
			return nil, err
		}
		for _, alg := range asymmetricAlgs {
			if !slices.Contains(v.methods, alg) {
				v.methods = append(v.methods, alg)
			}
		}
	}
	slices.Sort(v.methods)
	return v, nil
}

// Run refreshes the JWKS every JWKSRefresh until ctx ends, then returns nil; without a
// JWKS it only waits for ctx. It is the Verifier's only goroutine, run by its owner.
func (v *Verifier) Run(ctx context.Context) error {
	if v.jwks == nil {
		<-ctx.Done()
		return nil
	}
	return v.jwks.run(ctx, v.cfg.JWKSRefresh)
}

// MaxLifetime is the longest a token this Verifier accepts may live.
func (v *Verifier) MaxLifetime() time.Duration { return v.cfg.MaxLifetime }

// Leeway is the clock skew tolerated on exp, nbf and iat.
func (v *Verifier) Leeway() time.Duration { return v.cfg.Leeway }

// Verify checks a token's form, signature and claims at now, and returns its claims. A
// refusal is an *Error. now also paces JWKS refetches for unknown kids.
func (v *Verifier) Verify(ctx context.Context, raw string, now time.Time) (*Claims, error) {
	if err := checkTokenJSON(raw); err != nil {
		return nil, err
	}
	// The claims are a map, matched by exact name: encoding/json would let "SUB" or "Exp"
	// fill the registered claims of a struct, and checkTokenJSON refuses tokens that try.
	mc := jwt.MapClaims{}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(v.methods), jwt.WithLeeway(v.cfg.Leeway),
		jwt.WithExpirationRequired(), jwt.WithIssuedAt(), jwt.WithTimeFunc(func() time.Time { return now }),
	}
	if v.cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(v.cfg.Issuer))
	}
	if v.cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(v.cfg.Audience))
	}
	tok, err := jwt.ParseWithClaims(raw, mc, v.keyfunc(ctx, now), opts...)
	if err != nil {
		return nil, v.refusal(tok, mc, err)
	}
	return v.claims(mc, now)
}

// keyfunc returns the keys that may verify a token: the secret or PEM keys of its alg, and
// for an asymmetric alg the JWKS key of its kid. So the key settles the algorithm: HS256
// only ever meets the secret, a public key only its own algorithm.
func (v *Verifier) keyfunc(ctx context.Context, now time.Time) jwt.Keyfunc {
	return func(t *jwt.Token) (any, error) {
		alg := t.Method.Alg()
		static := v.static[alg]
		if v.jwks == nil || alg == "HS256" {
			if len(static) == 1 {
				return static[0], nil
			}
			return jwt.VerificationKeySet{Keys: static}, nil
		}
		found, err := v.jwks.keyFor(ctx, t, now)
		if err != nil && len(static) == 0 {
			return nil, err
		}
		keys := slices.Clip(static)
		switch k := found.(type) {
		case nil:
		case jwt.VerificationKeySet:
			keys = append(keys, k.Keys...)
		default:
			keys = append(keys, k)
		}
		return jwt.VerificationKeySet{Keys: keys}, nil
	}
}

// refusal turns a golang-jwt error into the *Error the client sees.
func (v *Verifier) refusal(tok *jwt.Token, mc jwt.MapClaims, err error) error {
	switch {
	case errors.Is(err, errUnknownKID):
		return refuse("invalid token: no key with its kid")
	case tok != nil && !slices.Contains(v.methods, headerAlg(tok)):
		return refuse(fmt.Sprintf("invalid token: alg %q is not accepted (the algorithm follows the configured keys)", headerAlg(tok)))
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		return refuse("invalid token: signature")
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		for _, name := range []string{"exp", "iss", "aud"} {
			if _, ok := mc[name]; !ok {
				return refuse("invalid token: " + name + " is required")
			}
		}
	case errors.Is(err, jwt.ErrTokenExpired):
		return refuse("token expired")
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return refuse("token not valid yet (nbf)")
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return refuse("invalid token: iat is in the future")
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return refuse("invalid token: wrong issuer (iss)")
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return refuse("invalid token: wrong audience (aud)")
	}
	return refuse("invalid token")
}

// headerAlg is the alg a token's header names, "" if none.
func headerAlg(t *jwt.Token) string {
	alg, _ := t.Header["alg"].(string)
	return alg
}

// claims reads the verified claims mc into Claims, refusing what the signature alone does
// not: a sub that is not a user id, a lifetime over the maximum, malformed grants.
func (v *Verifier) claims(mc jwt.MapClaims, now time.Time) (*Claims, error) {
	name := v.cfg.UserClaim
	if name == "" {
		name = "sub"
	}
	sub, ok := mc[name].(string)
	if !ok || !subscriptions.ValidID(sub) {
		return nil, refuse("invalid token: " + name + " is not a valid user id")
	}
	var err error
	// A token that lives longer than the maximum would outlive a revocation's record.
	exp, _ := mc.GetExpirationTime()
	maxLife := v.cfg.MaxLifetime
	if exp.Sub(now) > maxLife+v.cfg.Leeway {
		return nil, refuse(fmt.Sprintf("invalid token: exp is more than %v away (the maximum token lifetime)", maxLife))
	}
	c := &Claims{Subject: sub, Expires: exp.Time}
	if iat, _ := mc.GetIssuedAt(); iat != nil {
		if exp.Sub(iat.Time) > maxLife {
			return nil, refuse(fmt.Sprintf("invalid token: exp is more than %v after iat (the maximum token lifetime)", maxLife))
		}
		c.IssuedAt = iat.Time
	}
	if c.Grants.Rooms, err = grant(mc, "rooms"); err != nil {
		return nil, err
	}
	if c.Grants.DM, err = grant(mc, "dm"); err != nil {
		return nil, err
	}
	return c, nil
}

// grant parses the claim name, absent or an array of patterns.
func grant(mc jwt.MapClaims, name string) (Patterns, error) {
	v, ok := mc[name]
	if !ok {
		return Patterns{}, nil
	}
	list, ok := v.([]any)
	if !ok {
		return Patterns{}, refuse(fmt.Sprintf("invalid token: %s must be an array of patterns", name))
	}
	strs := make([]string, 0, len(list))
	for _, e := range list {
		s, ok := e.(string)
		if !ok {
			return Patterns{}, refuse(fmt.Sprintf("invalid token: %s must be an array of patterns", name))
		}
		strs = append(strs, s)
	}
	p, err := ParsePatterns(strs)
	if err != nil {
		return Patterns{}, refuse(fmt.Sprintf("invalid token: %s: %v", name, err))
	}
	return p, nil
}
