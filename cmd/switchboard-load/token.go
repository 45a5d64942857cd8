package main

import (
	"cmp"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// tokenLifetime is how long minted tokens stay valid: longer than any bounded run.
const tokenLifetime = time.Hour

// signer mints user tokens as a deployment's backend or identity provider would: HS256
// with the server's --jwt-secret, or RS256, ES256 or EdDSA with the private half of the
// server's --jwt-public-key (or of a key in its JWKS, named by kid).
type signer struct {
	method jwt.SigningMethod
	key    any
	kid    string
	dm     []string // the tokens' dm claim (--jwt-dm); none when empty
}

// grantedClaims are the registered claims plus the dm grant of the permissions.
type grantedClaims struct {
	jwt.RegisteredClaims
	DM []string `json:"dm,omitempty"`
}

// newSigner returns the signer of the credential flags, nil for dev auth (?user=).
func newSigner(secret, keyPath, kid string) (*signer, error) {
	switch {
	case secret != "" && keyPath != "":
		return nil, errors.New("--jwt-secret and --jwt-private-key are exclusive")
	case secret != "":
		return &signer{method: jwt.SigningMethodHS256, key: []byte(secret), kid: kid}, nil
	case keyPath != "":
		b, err := os.ReadFile(keyPath)
		if err != nil {
			return nil, fmt.Errorf("--jwt-private-key: %w", err)
		}
		key, method, err := parsePrivateKey(b)
		if err != nil {
			return nil, fmt.Errorf("--jwt-private-key %s: %w", keyPath, err)
		}
		return &signer{method: method, key: key, kid: kid}, nil
	case kid != "":
		return nil, errors.New("--jwt-kid needs --jwt-private-key or --jwt-secret")
	}
	return nil, nil
}

// parsePrivateKey reads a PEM private key (PKCS #8, PKCS #1 or SEC 1, as openssl writes
// them) and the algorithm it signs: RSA RS256, EC P-256 ES256, Ed25519 EdDSA.
func parsePrivateKey(b []byte) (any, jwt.SigningMethod, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, nil, errors.New("no PEM block")
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, nil, fmt.Errorf("a %q block, not a private key", block.Type)
	}
	if err != nil {
		return nil, nil, err
	}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		return k, jwt.SigningMethodRS256, nil
	case *ecdsa.PrivateKey:
		if k.Curve != elliptic.P256() {
			return nil, nil, fmt.Errorf("an EC key on %s; the server takes P-256 (ES256)", k.Curve.Params().Name)
		}
		return k, jwt.SigningMethodES256, nil
	case ed25519.PrivateKey:
		return k, jwt.SigningMethodEdDSA, nil
	}
	return nil, nil, fmt.Errorf("a %T key; want RSA, EC P-256 or Ed25519", key)
}

// alg is the algorithm of the tokens s mints.
func (s *signer) alg() string { return s.method.Alg() }

// mint signs a token for user, issued at now.
func (s *signer) mint(user string, now time.Time) (string, error) {
	tok := jwt.NewWithClaims(s.method, grantedClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   user,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(tokenLifetime)),
		},
		DM: s.dm,
	})
	if s.kid != "" {
		tok.Header["kid"] = s.kid
	}
	return tok.SignedString(s.key)
}

// mintAll mints every user's token on every core before a run connects them: an RS256
// signature costs the tool about a millisecond, which minted during a connect storm would
// measure the tool instead of the server.
func (s *signer) mintAll(ctx context.Context, users []string) (map[string]string, error) {
	toks := make([]string, len(users))
	now := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, runtime.NumCPU())
	for w := range errs {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= len(users) {
					return
				}
				if toks[i], errs[w] = s.mint(users[i], now); errs[w] != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	if err := cmp.Or(errors.Join(errs...), ctx.Err()); err != nil {
		return nil, err
	}
	m := make(map[string]string, len(users))
	for i, u := range users {
		m[u] = toks[i]
	}
	return m, nil
}
