package tokens

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/switchboard-dev/switchboard/subscriptions"
)

// Config says which keys verify tokens and what a token must say. Zero values mean the
// defaults named on each field.
type Config struct {
	// Secret verifies HS256 tokens. Empty: no HS256.
	Secret []byte
	// Issuer and Audience, when set, must match the token's iss and one of its aud.
	Issuer, Audience string
	// MaxLifetime is the longest a token may live: one whose exp is further than this from
	// now or from its iat is refused. Default 24h.
	MaxLifetime time.Duration
	// Leeway tolerates clock skew between the token's issuer and this node, on exp, nbf
	// and iat. Default 30s.
	Leeway time.Duration
}

// Enabled reports whether any key is configured: token mode. Without one the server is in
// dev mode.
func (c Config) Enabled() bool { return len(c.Secret) > 0 }

func (c *Config) setDefaults() {
	if c.MaxLifetime <= 0 {
		c.MaxLifetime = 24 * time.Hour
	}
	if c.Leeway <= 0 {
		c.Leeway = 30 * time.Second
	}
}

// Error is a token refusal; its message says what is wrong, for the client.
type Error struct{ Message string }

func (e *Error) Error() string { return e.Message }

func refuse(msg string) error { return &Error{Message: msg} }

// Verifier verifies tokens under the configured keys. It is safe for concurrent use.
type Verifier struct {
	cfg Config
}

// New returns a Verifier for cfg. ctx bounds the background work some keys need.
func New(ctx context.Context, cfg Config) (*Verifier, error) {
	cfg.setDefaults()
	if !cfg.Enabled() {
		return nil, errors.New("tokens: no key configured")
	}
	return &Verifier{cfg: cfg}, nil
}

// MaxLifetime is the longest a token this Verifier accepts may live.
func (v *Verifier) MaxLifetime() time.Duration { return v.cfg.MaxLifetime }

// Leeway is the clock skew tolerated on exp, nbf and iat.
func (v *Verifier) Leeway() time.Duration { return v.cfg.Leeway }

// Verify checks a token's form, signature and claims at now, and returns its claims. A
// refusal is an *Error.
func (v *Verifier) Verify(ctx context.Context, raw string, now time.Time) (*Claims, error) {
	if err := checkTokenJSON(raw); err != nil {
		return nil, err
	}
	// The claims are a map, matched by exact name: encoding/json would let "SUB" or "Exp"
	// fill the registered claims of a struct, and checkTokenJSON refuses tokens that try.
	mc := jwt.MapClaims{}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithLeeway(v.cfg.Leeway),
		jwt.WithExpirationRequired(), jwt.WithIssuedAt(), jwt.WithTimeFunc(func() time.Time { return now }),
	}
	if v.cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(v.cfg.Issuer))
	}
	if v.cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(v.cfg.Audience))
	}
	_, err := jwt.ParseWithClaims(raw, mc, func(*jwt.Token) (any, error) { return v.cfg.Secret, nil }, opts...)
	switch {
	case err == nil:
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return nil, refuse("invalid token: exp is required")
	case errors.Is(err, jwt.ErrTokenExpired):
		return nil, refuse("token expired")
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return nil, refuse("token not valid yet (nbf)")
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return nil, refuse("invalid token: iat is in the future")
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return nil, refuse("invalid token: wrong issuer (iss)")
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return nil, refuse("invalid token: wrong audience (aud)")
	default:
		return nil, refuse("invalid token")
	}
	return v.claims(mc, now)
}

// claims reads the verified claims mc into Claims, refusing what the signature alone does
// not: a sub that is not a user id, a lifetime over the maximum, malformed grants.
func (v *Verifier) claims(mc jwt.MapClaims, now time.Time) (*Claims, error) {
	sub, err := mc.GetSubject()
	if err != nil || !subscriptions.ValidID(sub) {
		return nil, refuse("invalid token: sub is not a valid user id")
	}
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
