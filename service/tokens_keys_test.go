package service_test

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"

	"github.com/switchboard-dev/switchboard/tokens"
)

// Tokens signed by an identity provider's key, published in a JWKS (issue 15): a node
// fetches the set over HTTP and picks a token's key by its kid.

// signRS256 signs claims with key under kid.
func signRS256(t *testing.T, key *rsa.PrivateKey, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	tok.Header["kid"] = kid
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestJWKSTokensConnectOverARealSocket(t *testing.T) {
	idp, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	jwk, err := jwkset.NewJWKFromKey(idp.Public(), jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: "idp-1", USE: jwkset.UseSig}})
	if err != nil {
		t.Fatal(err)
	}
	doc, err := json.Marshal(jwkset.JWKSMarshal{Keys: []jwkset.JWKMarshal{jwk.Marshal()}})
	if err != nil {
		t.Fatal(err)
	}
	var fetches atomic.Int64
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fetches.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(doc)
	}))
	t.Cleanup(jwks.Close)

	srv, _ := startRedis(t)
	n := startNode(t, onRedis(srv), "a", withTokens(t, tokens.Config{
		JWKSURL: jwks.URL, Issuer: "https://id.example/", Audience: "switchboard",
	}))
	exp := time.Now().Add(time.Hour).Unix()
	claims := func(sub string) jwt.MapClaims {
		return jwt.MapClaims{"sub": sub, "iss": "https://id.example/", "aud": "switchboard", "exp": exp, "rooms": []string{"team-1.*"}}
	}

	t.Run("an RS256 token from the JWKS connects and gets its welcome", func(t *testing.T) {
		c := dialToken(t, n, signRS256(t, idp, "idp-1", claims("dave")))
		if err := c.Send(map[string]any{"type": "join", "room": "team-1.general", "ref": "j1"}); err != nil {
			t.Fatal(err)
		}
		if f := next(t, c, "ack"); f.Ref != "j1" {
			t.Fatalf("join: %s, want the ack of j1 (its rooms claim grants team-1.*)", f.Raw)
		}
	})
	t.Run("a token with an unknown kid gets 401", func(t *testing.T) {
		checkRefusedToken(t, n, signRS256(t, idp, "idp-2", claims("erin")), "no key with its kid")
	})
	t.Run("a token signed by another key under the JWKS kid gets 401", func(t *testing.T) {
		other, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		checkRefusedToken(t, n, signRS256(t, other, "idp-1", claims("erin")), "signature")
	})
	t.Run("a token for another audience gets 401", func(t *testing.T) {
		c := claims("erin")
		c["aud"] = "another-app"
		checkRefusedToken(t, n, signRS256(t, idp, "idp-1", c), "wrong audience")
	})
	// The unknown kid came within 10 s of the fetch at start: refused without a refetch.
	if got := fetches.Load(); got != 1 {
		t.Fatalf("the JWKS was fetched %d times, want once (at start)", got)
	}
}
