package service_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/switchboard-dev/switchboard/internal/testutil"
	"github.com/switchboard-dev/switchboard/internal/wsclient"
	"github.com/switchboard-dev/switchboard/tokens"
)

// Tokens are refused unless they expire within the maximum lifetime, their JSON is
// unambiguous, and no revocation of their user's tokens stands (issue 13, findings 6 and 9).

// signRaw signs a token whose header and claims are the given JSON texts as they are, so
// that tests can send what golang-jwt would never encode: duplicate and case-variant names.
func signRaw(secret []byte, header, claims string) string {
	enc := base64.RawURLEncoding
	body := enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(claims))
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(body))
	return body + "." + enc.EncodeToString(mac.Sum(nil))
}

// tokenBystanders connects bob and carol to n with tokens, as in token mode they must.
func tokenBystanders(t *testing.T, n *node, secret []byte) *bystanders {
	t.Helper()
	b := &bystanders{n: n}
	for _, u := range []string{"bob", "carol"} {
		tok := mintToken(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": u, "exp": time.Now().Add(time.Hour).Unix()})
		if u == "bob" {
			b.bob = dialToken(t, n, tok)
		} else {
			b.carol = dialToken(t, n, tok)
		}
	}
	return b
}

// dialToken opens a WebSocket with token and reads its welcome.
func dialToken(t *testing.T, n *node, token string) *wsclient.Conn {
	t.Helper()
	c, err := wsclient.Dial(n.wsURL("token="+token), wsclient.Options{})
	if err != nil {
		t.Fatalf("dial %s with a token: %v", n.name, err)
	}
	t.Cleanup(c.Close)
	next(t, c, "welcome")
	return c
}

// checkRefusedToken asserts that token is refused on n with 401 and a message that says why.
func checkRefusedToken(t *testing.T, n *node, token, why string) {
	t.Helper()
	refused := refusedDial(t, n.wsURL("token="+token), nil)
	checkRefusedUpgrade(t, refused, http.StatusUnauthorized, "unauthorized")
	var e struct{ Error struct{ Message string } }
	if err := json.Unmarshal([]byte(refused.Body), &e); err != nil || !strings.Contains(e.Error.Message, why) {
		t.Fatalf("refusal %q does not say %q", refused.Body, why)
	}
}

func TestTokensMustExpireWithinTheMaxLifetimeAndBeUnambiguous(t *testing.T) {
	secret := []byte("jwt-secret-for-tests")
	srv, _ := startRedis(t)
	n := startNode(t, onRedis(srv), "a", withTokens(t, tokens.Config{Secret: secret, MaxLifetime: time.Hour}))
	b := tokenBystanders(t, n, secret)
	now := time.Now().Unix()
	hour := now + 3600
	probe := startBystander(t, n, n, "bystander", nil, "token",
		mintToken(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "bystander", "exp": hour}))
	hs := `{"alg":"HS256","typ":"JWT"}`
	claims := func(s string, args ...any) string { return fmt.Sprintf(s, args...) }
	refusals := []struct {
		name   string
		header string
		claims string
		why    string // in the refusal's message
	}{
		{"a token without exp is refused", hs, claims(`{"sub":"dave"}`), "exp is required"},
		{"a token with exp in 9999 is refused", hs, claims(`{"sub":"dave","exp":253402300799}`), "maximum token lifetime"},
		{"a token whose exp is past the max lifetime from now is refused", hs, claims(`{"sub":"dave","exp":%d}`, now+2*3600), "maximum token lifetime"},
		{"a token whose exp is past the max lifetime from its iat is refused", hs, claims(`{"sub":"dave","iat":%d,"exp":%d}`, now-3000, now+1200), "after iat"},
		{"a token issued in the future is refused", hs, claims(`{"sub":"dave","iat":%d,"exp":%d}`, now+600, hour), "iat is in the future"},
		{"a token with sub twice is refused", hs, claims(`{"sub":"dave","exp":%d,"sub":"bob"}`, hour), "claim name appears twice"},
		{"a token with exp twice is refused", hs, claims(`{"sub":"dave","exp":%d,"exp":%d}`, hour, hour), "claim name appears twice"},
		{"a token with a private claim twice is refused", hs, claims(`{"sub":"dave","exp":%d,"role":"a","role":"b"}`, hour), "claim name appears twice"},
		{"a token with sub and SUB is refused", hs, claims(`{"sub":"dave","SUB":"bob","exp":%d}`, hour), `claim "SUB" differs from "sub"`},
		{"a token with only SUB is refused", hs, claims(`{"SUB":"dave","exp":%d}`, hour), `"SUB"`},
		{"a token with Exp instead of exp is refused", hs, claims(`{"sub":"dave","Exp":%d}`, hour), `"Exp"`},
		{"a token with EXP beside exp is refused", hs, claims(`{"sub":"dave","exp":%d,"EXP":%d}`, hour, now-60), `"EXP"`},
		{"a token with Iat beside iat is refused", hs, claims(`{"sub":"dave","exp":%d,"iat":%d,"Iat":%d}`, hour, now, now), `"Iat"`},
		{"a header with alg twice is refused", `{"alg":"none","alg":"HS256"}`, claims(`{"sub":"dave","exp":%d}`, hour), "header name appears twice"},
		{"a header with ALG is refused", `{"alg":"HS256","ALG":"none"}`, claims(`{"sub":"dave","exp":%d}`, hour), `"ALG"`},
		{"claims that are not an object are refused", hs, `["sub","dave"]`, "claims are not a JSON object"},
		{"claims with invalid UTF-8 are refused", hs, claims("{\"sub\":\"dave\",\"exp\":%d,\"n\":\"caf\xe9\"}", hour), "claims are not valid JSON"},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			checkRefusedToken(t, n, signRaw(secret, tc.header, tc.claims), tc.why)
			b.checkUntouched(t)
		})
	}
	accepted := []struct {
		name   string
		claims string
		user   string
	}{
		{"a token with exp within the max lifetime and no iat is accepted", claims(`{"sub":"dave","exp":%d}`, now+3500), "dave"},
		{"a token with exp the max lifetime after its iat is accepted", claims(`{"sub":"erin","iat":%d,"exp":%d}`, now, now+3600), "erin"},
		{"a token with private claims of any case is accepted", claims(`{"sub":"frank","exp":%d,"role":"x","Role":"y"}`, hour), "frank"},
	}
	for _, tc := range accepted {
		t.Run(tc.name, func(t *testing.T) {
			if w := acceptedDial(t, n.wsURL("token="+signRaw(secret, hs, tc.claims)), nil); w.User != tc.user {
				t.Fatalf("welcome %s, want user %s", w.Raw, tc.user)
			}
			b.checkUntouched(t)
		})
	}
	t.Logf("bystander p99 %v", probe.Stop())
}

// deleteConnections calls DELETE /v1/users/{user}/connections with query on n.
func deleteConnections(t *testing.T, n *node, user, query string) response {
	t.Helper()
	u := n.base + "/v1/users/" + user + "/connections"
	if query != "" {
		u += "?" + query
	}
	return do(t, "DELETE", u, "", nil)
}

func TestRevokedTokensAreRefusedOnEveryNode(t *testing.T) {
	secret := []byte("jwt-secret-for-tests")
	srv, _ := startRedis(t)
	a := startNode(t, onRedis(srv), "a", withSecret(t, secret))
	bnode := startNode(t, onRedis(srv), "b", withSecret(t, secret))
	b := tokenBystanders(t, a, secret)
	hour := time.Now().Add(time.Hour).Unix()
	probe := startBystander(t, bnode, a, "bystander", nil, "token",
		mintToken(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "bystander", "exp": hour}))
	token := func(claims jwt.MapClaims) string { return mintToken(t, jwt.SigningMethodHS256, secret, claims) }
	issued := time.Now().Add(-10 * time.Second).Unix()
	old := token(jwt.MapClaims{"sub": "alice", "iat": issued, "exp": hour})
	noIat := token(jwt.MapClaims{"sub": "alice", "exp": hour})
	alice := dialToken(t, a, old)

	t.Run("a revoke that is not true or false is refused and revokes nothing", func(t *testing.T) {
		checkRefusal(t, deleteConnections(t, bnode, "alice", "revoke=yes"), http.StatusBadRequest, "bad_request")
		noFrame(t, alice, 200*time.Millisecond)
		c := dialToken(t, bnode, old)
		c.Close()
		b.checkUntouched(t)
	})

	t.Run("a DELETE with revoke=true closes the user's connections and answers when tokens are good again", func(t *testing.T) {
		r := deleteConnections(t, bnode, "alice", "revoke=true")
		if r.status != http.StatusOK {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
		var ans struct {
			Disconnected  int       `json:"disconnected"`
			RevokedBefore time.Time `json:"revoked_before"`
		}
		if err := json.Unmarshal(r.body, &ans); err != nil || ans.Disconnected != 1 || ans.RevokedBefore.IsZero() {
			t.Fatalf("answer %s (%v), want one disconnected and revoked_before", r.body, err)
		}
		select {
		case <-alice.Done():
		case <-time.After(10 * time.Second):
			t.Fatal("alice's connection is still open")
		}
		if code, _ := alice.CloseCode(); code != 4001 {
			t.Fatalf("close code %d, want 4001", code)
		}
		b.checkUntouched(t)

		for _, n := range []*node{a, bnode} {
			t.Run("on node "+n.name+" a token issued before is refused", func(t *testing.T) {
				checkRefusedToken(t, n, old, "token revoked")
				b.checkUntouched(t)
			})
			t.Run("on node "+n.name+" a token without iat is refused while the revocation stands", func(t *testing.T) {
				checkRefusedToken(t, n, noIat, "no iat")
				b.checkUntouched(t)
			})
			t.Run("on node "+n.name+" a token issued at revoked_before is accepted", func(t *testing.T) {
				// A backend mints the fresh token once revoked_before has come.
				testutil.WaitFor(t, 5*time.Second, func() bool { return !time.Now().Before(ans.RevokedBefore) }, "revoked_before to pass")
				fresh := token(jwt.MapClaims{"sub": "alice", "iat": ans.RevokedBefore.Unix(), "exp": hour})
				if w := acceptedDial(t, n.wsURL("token="+fresh), nil); w.User != "alice" {
					t.Fatalf("welcome %s", w.Raw)
				}
				b.checkUntouched(t)
			})
		}
		t.Run("another user's tokens are untouched", func(t *testing.T) {
			c := dialToken(t, bnode, token(jwt.MapClaims{"sub": "gina", "iat": issued, "exp": hour}))
			c.Close()
		})
	})

	t.Run("a DELETE without revoke closes the connections and leaves tokens valid, as before", func(t *testing.T) {
		tok := token(jwt.MapClaims{"sub": "hank", "iat": issued, "exp": hour})
		hank := dialToken(t, a, tok)
		r := deleteConnections(t, bnode, "hank", "")
		if r.status != http.StatusOK || strings.Contains(string(r.body), "revoked_before") {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
		<-hank.Done()
		c := dialToken(t, bnode, tok)
		c.Close()
		b.checkUntouched(t)
	})
	t.Logf("bystander p99 %v", probe.Stop())
}

// The record of a revocation lives as long as a token it refuses can: the max lifetime and
// the leeway exp gets. After it, a token without iat is accepted again.
func TestTokenRevocationExpiresAfterTheMaxLifetime(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for a revocation to expire (about 32 s)")
	}
	secret := []byte("jwt-secret-for-tests")
	srv, rdb := startRedis(t)
	n := startNode(t, onRedis(srv), "a", withTokens(t, tokens.Config{Secret: secret, MaxLifetime: time.Second}))
	// Lives until the end: its one-second tokens expire long before (plus the leeway), so
	// it refreshes its token whenever it is told to.
	bystanderToken := func() string {
		return mintToken(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "bystander", "exp": time.Now().Add(time.Second).Unix()})
	}
	probe := startRefreshingBystander(t, n, n, "bystander", nil, bystanderToken, "token", bystanderToken())
	fresh := func() string {
		return mintToken(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(time.Second).Unix()})
	}
	if r := deleteConnections(t, n, "alice", "revoke=true"); r.status != http.StatusOK {
		t.Fatalf("DELETE: %d %s", r.status, r.body)
	}
	start := time.Now()
	checkRefusedToken(t, n, fresh(), "token revoked")
	keys := rdb.Keys(t.Context(), "*revoked*").Val()
	if len(keys) != 1 || !strings.HasPrefix(keys[0], "{t:") {
		t.Fatalf("revocation keys %v, want one under the test's prefix", keys)
	}
	if ttl := rdb.PTTL(t.Context(), keys[0]).Val(); ttl <= 0 || ttl > 33*time.Second {
		t.Fatalf("the revocation lives %v, want the max lifetime plus the 30 s leeway and a second", ttl)
	}
	testutil.WaitFor(t, 60*time.Second, func() bool {
		c, err := wsclient.Dial(n.wsURL("token="+fresh()), wsclient.Options{})
		if err != nil {
			return false
		}
		c.Close()
		return true
	}, "a token without iat to be accepted once the revocation expired")
	t.Logf("the revocation expired after %v", time.Since(start).Round(time.Second))
	t.Logf("bystander p99 %v", probe.Stop())
}

func TestTokenConnectFailsClosedWhenRedisIsDown(t *testing.T) {
	secret := []byte("jwt-secret-for-tests")
	srv, _ := startRedis(t)
	n := startNode(t, onRedis(srv), "a", withSecret(t, secret))
	tok := mintToken(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix()})
	srv.Stop()
	refused := refusedDial(t, n.wsURL("token="+tok), nil)
	checkRefusedUpgrade(t, refused, http.StatusServiceUnavailable, "unavailable")
	if !strings.Contains(refused.Body, "revoked") {
		t.Fatalf("refusal %q does not say the revocation could not be checked", refused.Body)
	}
	srv.Restart(t)
	testutil.WaitFor(t, 10*time.Second, func() bool {
		c, err := wsclient.Dial(n.wsURL("token="+tok), wsclient.Options{})
		if err != nil {
			return false
		}
		c.Close()
		return true
	}, "the token to be accepted once Redis is back")
}
