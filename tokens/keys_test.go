package tokens_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"

	"github.com/switchboard-dev/switchboard/tokens"
)

var secret = []byte("a-secret-of-the-tests")

// verifiers builds the Verifiers the tables use, by name, on a JWKS server of their own.
func verifiers(t *testing.T) map[string]*tokens.Verifier {
	t.Helper()
	k := keys()
	pems := pemOf(t, k.rsaPEM.Public(), k.ecPEM.Public(), k.edPEM.Public())
	srv := startJWKS(t, jwksJSON(t, jwk{pub: k.rsaA.Public(), kid: "a"}, jwk{pub: k.ec.Public(), kid: "ec"}, jwk{pub: k.ed.Public(), kid: "ed"}))
	cfgs := map[string]tokens.Config{
		"all":     {Secret: secret, PublicKeyPEM: pems, JWKSURL: srv.URL},
		"secret":  {Secret: secret},
		"rsa PEM": {PublicKeyPEM: pemOf(t, k.rsaPEM.Public())},
		"EC PEM":  {PublicKeyPEM: pemOf(t, k.ecPEM.Public())},
		"JWKS":    {JWKSURL: srv.URL},
		"iss+aud": {Secret: secret, Issuer: "https://id.example", Audience: "switchboard"},
	}
	vs := map[string]*tokens.Verifier{}
	for name, cfg := range cfgs {
		v, err := tokens.New(context.Background(), cfg)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		vs[name] = v
	}
	return vs
}

func TestTokensAreRefusedUnlessTheirKeyAndClaimsHold(t *testing.T) {
	k := keys()
	vs := verifiers(t)
	now := time.Now()
	c := func(extra ...any) jwt.MapClaims { return valid(now, "dave", extra...) }
	pems := pemOf(t, k.rsaPEM.Public(), k.ecPEM.Public(), k.edPEM.Public())
	rsaDER, err := x509.MarshalPKIXPublicKey(k.rsaA.Public())
	if err != nil {
		t.Fatal(err)
	}
	none := func(claims jwt.MapClaims) string {
		s, err := jwt.NewWithClaims(jwt.SigningMethodNone, claims).SignedString(jwt.UnsafeAllowNoneSignatureType)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	cases := []struct {
		name, verifier, token, why string
	}{
		{"an RS256 token signed by a key nobody configured is refused", "all",
			sign(t, jwt.SigningMethodRS256, k.rsaOther, "", c()), "signature"},
		{"an RS256 token signed by another key under a JWKS kid is refused", "all",
			sign(t, jwt.SigningMethodRS256, k.rsaOther, "a", c()), "signature"},
		{"an ES256 token signed by another key is refused", "all",
			sign(t, jwt.SigningMethodES256, k.ecOther, "", c()), "signature"},
		{"an ES256 token signed by another key under the EdDSA key's kid is refused", "all",
			sign(t, jwt.SigningMethodES256, k.ecOther, "ed", c()), "signature"},
		{"an HS256 token signed with another secret is refused", "all",
			sign(t, jwt.SigningMethodHS256, []byte("not-the-secret"), "", c()), "signature"},
		{"a token with alg none is refused", "all", none(c()), `alg "none" is not accepted`},
		{"a token with alg none is refused with a secret alone", "secret", none(c()), `alg "none" is not accepted`},
		{"an HS256 token signed with the PEM file as its secret is refused (alg confusion)", "all",
			sign(t, jwt.SigningMethodHS256, pems, "", c()), "signature"},
		{"an HS256 token signed with the PEM file is refused where only the PEM key is set", "rsa PEM",
			sign(t, jwt.SigningMethodHS256, pemOf(t, k.rsaPEM.Public()), "", c()), `alg "HS256" is not accepted`},
		{"an HS256 token signed with a JWKS key's DER bytes under its kid is refused", "all",
			sign(t, jwt.SigningMethodHS256, rsaDER, "a", c()), "signature"},
		{"an HS256 token signed with a JWKS key's DER bytes is refused without a secret", "JWKS",
			sign(t, jwt.SigningMethodHS256, rsaDER, "a", c()), `alg "HS256" is not accepted`},
		{"an RS256 token is refused where the only key is an EC key", "EC PEM",
			sign(t, jwt.SigningMethodRS256, k.rsaPEM, "", c()), `alg "RS256" is not accepted`},
		{"an RS256 token naming the EC key's kid is refused", "JWKS",
			sign(t, jwt.SigningMethodRS256, k.rsaOther, "ec", c()), "signature"},
		{"an HS512 token is refused", "all",
			sign(t, jwt.SigningMethodHS512, secret, "", c()), `alg "HS512" is not accepted`},
		{"an ES384 token is refused when no key is P-384", "all",
			sign(t, jwt.SigningMethodES384, k.ec384, "", c()), "signature"},
		{"a token with an unknown kid is refused", "JWKS",
			sign(t, jwt.SigningMethodRS256, k.rsaA, "nope", c()), "no key with its kid"},
		{"a token of the wrong issuer is refused", "iss+aud",
			sign(t, jwt.SigningMethodHS256, secret, "", c("iss", "https://evil.example", "aud", "switchboard")), "wrong issuer"},
		{"a token without iss is refused when an issuer is set", "iss+aud",
			sign(t, jwt.SigningMethodHS256, secret, "", c("aud", "switchboard")), "iss is required"},
		{"a token for another audience is refused", "iss+aud",
			sign(t, jwt.SigningMethodHS256, secret, "", c("iss", "https://id.example", "aud", []string{"other", "more"})), "wrong audience"},
		{"a token without aud is refused when an audience is set", "iss+aud",
			sign(t, jwt.SigningMethodHS256, secret, "", c("iss", "https://id.example")), "aud is required"},
		{"a token expired beyond the leeway is refused", "all",
			sign(t, jwt.SigningMethodRS256, k.rsaA, "a", c("exp", now.Add(-time.Minute).Unix())), "token expired"},
		{"a token not valid for another minute (nbf) is refused", "all",
			sign(t, jwt.SigningMethodES256, k.ecPEM, "", c("nbf", now.Add(time.Minute).Unix())), "not valid yet"},
		{"a token without exp is refused", "all",
			sign(t, jwt.SigningMethodEdDSA, k.ed, "ed", jwt.MapClaims{"sub": "dave"}), "exp is required"},
		{"a token with a grant that is not a pattern is refused", "all",
			sign(t, jwt.SigningMethodRS256, k.rsaPEM, "", c("rooms", []string{"a b"})), "rooms"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			claims, err := vs[tc.verifier].Verify(context.Background(), tc.token, now)
			var te *tokens.Error
			if !errors.As(err, &te) {
				t.Fatalf("got claims %+v, err %v; want a refusal saying %q", claims, err, tc.why)
			}
			if !strings.Contains(te.Message, tc.why) {
				t.Fatalf("refusal %q does not say %q", te.Message, tc.why)
			}
		})
	}
}

func TestTokensVerifyUnderTheKeyOfTheirAlgorithm(t *testing.T) {
	k := keys()
	vs := verifiers(t)
	now := time.Now()
	c := func(extra ...any) jwt.MapClaims { return valid(now, "erin", extra...) }
	cases := []struct {
		name, verifier, token string
	}{
		{"HS256 with the secret", "all", sign(t, jwt.SigningMethodHS256, secret, "", c())},
		{"RS256 from the PEM file", "all", sign(t, jwt.SigningMethodRS256, k.rsaPEM, "", c())},
		{"RS256 from the PEM file alone", "rsa PEM", sign(t, jwt.SigningMethodRS256, k.rsaPEM, "", c())},
		{"ES256 from the PEM file", "all", sign(t, jwt.SigningMethodES256, k.ecPEM, "", c())},
		{"EdDSA from the PEM file", "all", sign(t, jwt.SigningMethodEdDSA, k.edPEM, "", c())},
		{"RS256 from the PEM file with a kid the JWKS lacks", "all", sign(t, jwt.SigningMethodRS256, k.rsaPEM, "pem-1", c())},
		{"RS256 from the JWKS by kid", "JWKS", sign(t, jwt.SigningMethodRS256, k.rsaA, "a", c())},
		{"ES256 from the JWKS by kid", "JWKS", sign(t, jwt.SigningMethodES256, k.ec, "ec", c())},
		{"EdDSA from the JWKS by kid", "JWKS", sign(t, jwt.SigningMethodEdDSA, k.ed, "ed", c())},
		{"RS256 from the JWKS without a kid", "JWKS", sign(t, jwt.SigningMethodRS256, k.rsaA, "", c())},
		{"RS256 from the JWKS beside the secret and the PEM keys", "all", sign(t, jwt.SigningMethodRS256, k.rsaA, "a", c())},
		{"a token expired 20 s ago, within the leeway", "all", sign(t, jwt.SigningMethodHS256, secret, "", c("exp", now.Add(-20*time.Second).Unix()))},
		{"a token valid from 20 s on (nbf), within the leeway", "all", sign(t, jwt.SigningMethodHS256, secret, "", c("nbf", now.Add(20*time.Second).Unix()))},
		{"a token of the configured issuer and audience", "iss+aud",
			sign(t, jwt.SigningMethodHS256, secret, "", c("iss", "https://id.example", "aud", []string{"other", "switchboard"}))},
	}
	for _, tc := range cases {
		t.Run(tc.name+" is accepted", func(t *testing.T) {
			claims, err := vs[tc.verifier].Verify(context.Background(), tc.token, now)
			if err != nil {
				t.Fatal(err)
			}
			if claims.Subject != "erin" || claims.Expires.IsZero() {
				t.Fatalf("claims %+v", claims)
			}
		})
	}
	t.Run("the grants of an RS256 token are read", func(t *testing.T) {
		tok := sign(t, jwt.SigningMethodRS256, k.rsaA, "a", c("rooms", []string{"team-42.*", "lobby"}, "dm", []string{"*"}))
		claims, err := vs["JWKS"].Verify(context.Background(), tok, now)
		if err != nil {
			t.Fatal(err)
		}
		g := claims.Grants
		if !g.Rooms.Match("team-42.x") || !g.Rooms.Match("lobby") || g.Rooms.Match("team-43") || !g.DM.Match("anyone") {
			t.Fatalf("grants %+v", g)
		}
	})
}

func TestNewRefusesKeysItCannotUse(t *testing.T) {
	k := keys()
	rsaPriv := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k.rsaPEM)})
	down := startJWKS(t, nil)
	down.down.Store(true)
	gone := startJWKS(t, nil)
	gone.Close()
	cases := []struct {
		name string
		cfg  tokens.Config
		why  string
	}{
		{"no key at all", tokens.Config{}, "no key configured"},
		{"a PEM EC key on P-384", tokens.Config{PublicKeyPEM: pemOf(t, k.ec384.Public())}, "must be P-256"},
		{"a PEM RSA key of 1024 bits", tokens.Config{PublicKeyPEM: pemOf(t, k.rsa1024.Public())}, "too short"},
		{"a PEM private key", tokens.Config{PublicKeyPEM: rsaPriv}, "give the public key"},
		{"a PEM file with a good key and then a P-384 one", tokens.Config{PublicKeyPEM: pemOf(t, k.rsaPEM.Public(), k.ec384.Public())}, "PEM block 2"},
		{"a file that is not PEM", tokens.Config{PublicKeyPEM: []byte("ssh-ed25519 AAAA...")}, "no PEM public key"},
		{"a JWKS that answers 500", tokens.Config{JWKSURL: down.URL}, "fetching the JWKS"},
		{"a JWKS nobody serves", tokens.Config{JWKSURL: gone.URL}, "fetching the JWKS"},
		{"a JWKS that is not JSON", tokens.Config{JWKSURL: startJWKS(t, []byte("<html>")).URL}, "fetching the JWKS"},
		{"a JWKS of a secret key only", tokens.Config{JWKSURL: startJWKS(t, rawJSON(t, map[string]any{
			"keys": []any{map[string]any{"kty": "oct", "kid": "hs", "alg": "HS256", "k": "c2VjcmV0"}},
		})).URL}, "no usable signing key"},
		{"a JWKS of an encryption key only", tokens.Config{JWKSURL: startJWKS(t, jwksJSON(t, jwk{pub: k.rsaA.Public(), kid: "enc", use: jwkset.UseEnc})).URL}, "no usable signing key"},
		{"a JWKS of a P-256 key that claims ES384", tokens.Config{JWKSURL: startJWKS(t, jwksJSON(t, jwk{pub: k.ec.Public(), kid: "x", alg: "ES384"})).URL}, "no usable signing key"},
	}
	for _, tc := range cases {
		t.Run(tc.name+" is refused at start", func(t *testing.T) {
			tc.cfg.JWKSTimeout = 5 * time.Second
			tc.cfg.Logger = slog.New(slog.DiscardHandler)
			v, err := tokens.New(context.Background(), tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.why) {
				t.Fatalf("New = %v, %v; want an error saying %q", v, err, tc.why)
			}
		})
	}
}
