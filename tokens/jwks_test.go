package tokens_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-dev/switchboard/internal/testutil"
	"github.com/switchboard-dev/switchboard/tokens"
)

const gap = 10 * time.Second // JWKSMinRefetch, the default, on the clock the tests pass Verify

// checkVerifies asserts that v accepts token at now.
func checkVerifies(t *testing.T, v *tokens.Verifier, token string, now time.Time) {
	t.Helper()
	if _, err := v.Verify(context.Background(), token, now); err != nil {
		t.Fatalf("refused: %v", err)
	}
}

// checkRefused asserts that v refuses token at now with a message saying why.
func checkRefused(t *testing.T, v *tokens.Verifier, token string, now time.Time, why string) {
	t.Helper()
	_, err := v.Verify(context.Background(), token, now)
	var te *tokens.Error
	if !errors.As(err, &te) || !strings.Contains(te.Message, why) {
		t.Fatalf("Verify = %v; want a refusal saying %q", err, why)
	}
}

// checkRequests asserts how many requests the JWKS server has had.
func checkRequests(t *testing.T, s *jwksServer, want int64) {
	t.Helper()
	if got := s.requests.Load(); got != want {
		t.Fatalf("the JWKS was fetched %d times, want %d", got, want)
	}
}

func TestJWKSRotationFetchesANewKidAtMostOncePerInterval(t *testing.T) {
	k := keys()
	srv := startJWKS(t, jwksJSON(t, jwk{pub: k.rsaA.Public(), kid: "a"}))
	v, err := tokens.New(context.Background(), tokens.Config{JWKSURL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()      // after New's fetch: the interval counts from it
	checkRequests(t, srv, 1) // at start
	tokA := sign(t, jwt.SigningMethodRS256, k.rsaA, "a", valid(start, "dave"))
	tokB := sign(t, jwt.SigningMethodRS256, k.rsaB, "b", valid(start, "dave"))
	checkVerifies(t, v, tokA, start)
	checkRequests(t, srv, 1)

	// The issuer rotates: b replaces a.
	srv.serve(jwksJSON(t, jwk{pub: k.rsaB.Public(), kid: "b"}))
	t.Run("the new kid within the interval of the last fetch is refused without a fetch", func(t *testing.T) {
		checkRefused(t, v, tokB, start.Add(gap-time.Second), "no key with its kid")
		checkRequests(t, srv, 1)
	})
	t.Run("the new kid after the interval is fetched and accepted", func(t *testing.T) {
		checkVerifies(t, v, tokB, start.Add(gap))
		checkRequests(t, srv, 2)
		checkVerifies(t, v, tokB, start.Add(gap+time.Second))
		checkRequests(t, srv, 2)
	})
	t.Run("the rotated-out kid is refused, without another fetch within the interval", func(t *testing.T) {
		checkRefused(t, v, tokA, start.Add(gap+time.Second), "no key with its kid")
		checkRequests(t, srv, 2)
	})
	t.Run("a made-up kid after the interval costs one fetch and is refused", func(t *testing.T) {
		tokZ := sign(t, jwt.SigningMethodRS256, k.rsaA, "zzz", valid(start, "dave"))
		checkRefused(t, v, tokZ, start.Add(2*gap), "no key with its kid")
		checkRequests(t, srv, 3)
		checkRefused(t, v, tokZ, start.Add(2*gap+time.Second), "no key with its kid")
		checkRequests(t, srv, 3)
	})
}

func TestJWKSUnknownKidsDoNotWaitForAFetchInProgress(t *testing.T) {
	k := keys()
	srv := startJWKS(t, jwksJSON(t, jwk{pub: k.rsaA.Public(), kid: "a"}))
	v, err := tokens.New(context.Background(), tokens.Config{JWKSURL: srv.URL, JWKSTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now() // after New's fetch: the interval counts from it
	srv.serve(jwksJSON(t, jwk{pub: k.rsaB.Public(), kid: "b"}))
	hold := make(chan struct{})
	release := sync.OnceFunc(func() { close(hold) })
	t.Cleanup(release) // a failed test must not leave the request held
	srv.hold.Store(&hold)
	tokB := sign(t, jwt.SigningMethodRS256, k.rsaB, "b", valid(start, "dave"))

	// The first token past the interval fetches; the server holds its request.
	first := make(chan error, 1)
	go func() {
		_, err := v.Verify(context.Background(), tokB, start.Add(gap))
		first <- err
	}()
	testutil.WaitFor(t, 10*time.Second, func() bool { return srv.requests.Load() == 2 }, "the refetch to reach the server")
	// Others meanwhile are refused at once: they finish while the request is still held.
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Go(func() {
			_, err := v.Verify(context.Background(), tokB, start.Add(gap+time.Second))
			errs <- err
		})
	}
	waited := make(chan struct{})
	go func() { wg.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(10 * time.Second):
		t.Fatal("tokens with an unknown kid waited for the fetch in progress")
	}
	close(errs)
	for err := range errs {
		var te *tokens.Error
		if !errors.As(err, &te) || !strings.Contains(te.Message, "no key with its kid") {
			t.Fatalf("a token during the fetch: %v; want refused for its kid", err)
		}
	}
	checkRequests(t, srv, 2)
	release()
	if err := <-first; err != nil {
		t.Fatalf("the token that fetched: %v", err)
	}
	checkVerifies(t, v, tokB, start.Add(gap+time.Second))
	checkRequests(t, srv, 2)
}

func TestJWKSThatCannotBeFetchedKeepsTheLastKeys(t *testing.T) {
	k := keys()
	srv := startJWKS(t, jwksJSON(t, jwk{pub: k.rsaA.Public(), kid: "a"}))
	reg := prometheus.NewRegistry()
	var logs logBuffer
	v, err := tokens.New(context.Background(), tokens.Config{
		JWKSURL: srv.URL, Registerer: reg, Logger: logs.logger(),
		JWKSRefresh: 20 * time.Millisecond, JWKSMinRefetch: time.Hour, // only Run refetches
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := metric(t, reg, "switchboard_jwks_keys"); got != 1 {
		t.Fatalf("switchboard_jwks_keys = %v, want 1", got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- v.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	tokA := sign(t, jwt.SigningMethodRS256, k.rsaA, "a", valid(time.Now(), "dave"))
	tokB := sign(t, jwt.SigningMethodRS256, k.rsaB, "b", valid(time.Now(), "dave"))

	srv.down.Store(true)
	testutil.WaitFor(t, 10*time.Second, func() bool { return metric(t, reg, "switchboard_jwks_refresh_failures_total") >= 2 }, "two failed refreshes counted")
	t.Run("the keys fetched before the outage still verify", func(t *testing.T) {
		checkVerifies(t, v, tokA, time.Now())
	})
	t.Run("the failure is logged", func(t *testing.T) {
		if !strings.Contains(logs.String(), "JWKS fetch failed") || !strings.Contains(logs.String(), "500") {
			t.Fatalf("log:\n%s", logs.String())
		}
	})
	t.Run("a refresh after the outage brings the issuer's new keys", func(t *testing.T) {
		srv.serve(jwksJSON(t, jwk{pub: k.rsaB.Public(), kid: "b"}))
		srv.down.Store(false)
		testutil.Eventually(t, 10*time.Second, func() error {
			_, err := v.Verify(context.Background(), tokB, time.Now())
			return err
		})
		checkRefused(t, v, tokA, time.Now(), "no key with its kid")
	})
}

func TestJWKSRefetchThatFailsIsCountedAndRefusesTheToken(t *testing.T) {
	k := keys()
	srv := startJWKS(t, jwksJSON(t, jwk{pub: k.rsaA.Public(), kid: "a"}))
	reg := prometheus.NewRegistry()
	var logs logBuffer
	v, err := tokens.New(context.Background(), tokens.Config{JWKSURL: srv.URL, Registerer: reg, Logger: logs.logger()})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	srv.down.Store(true)
	checkRefused(t, v, sign(t, jwt.SigningMethodRS256, k.rsaB, "b", valid(start, "dave")), start.Add(gap), "no key with its kid")
	checkRequests(t, srv, 2)
	if got := metric(t, reg, "switchboard_jwks_refresh_failures_total"); got != 1 {
		t.Fatalf("failures = %v, want 1", got)
	}
	checkVerifies(t, v, sign(t, jwt.SigningMethodRS256, k.rsaA, "a", valid(start, "dave")), start.Add(gap))
}

func TestJWKSKeysAreUsedOnlyForTheAlgorithmTheySay(t *testing.T) {
	k := keys()
	doc := rawJSON(t, map[string]any{"keys": []any{
		map[string]any{"kty": "oct", "kid": "hs", "alg": "HS256", "k": "c2VjcmV0"}, // "secret"
	}})
	// Splice the secret key into a set of real keys.
	real := string(jwksJSON(t,
		jwk{pub: k.rsaA.Public(), kid: "rs512", alg: "RS512"},
		jwk{pub: k.rsaB.Public(), kid: "enc", use: jwkset.UseEnc},
		jwk{pub: k.ec.Public(), kid: "sig", use: jwkset.UseSig},
	))
	doc = []byte(strings.Replace(real, `"keys":[`, `"keys":[`+strings.TrimSuffix(strings.TrimPrefix(string(doc), `{"keys":[`), "]}")+",", 1))
	srv := startJWKS(t, doc)
	now := time.Now()
	v, err := tokens.New(context.Background(), tokens.Config{JWKSURL: srv.URL, Secret: []byte("the-real-secret")})
	if err != nil {
		t.Fatal(err)
	}
	c := valid(now, "dave")
	t.Run("an RSA key whose alg is RS512 verifies RS512", func(t *testing.T) {
		checkVerifies(t, v, sign(t, jwt.SigningMethodRS512, k.rsaA, "rs512", c), now)
	})
	t.Run("an RSA key whose alg is RS512 does not verify RS256", func(t *testing.T) {
		checkRefused(t, v, sign(t, jwt.SigningMethodRS256, k.rsaA, "rs512", c), now, "invalid token")
	})
	t.Run("an encryption key does not verify", func(t *testing.T) {
		checkRefused(t, v, sign(t, jwt.SigningMethodRS256, k.rsaB, "enc", c), now, "invalid token")
	})
	t.Run("a key marked sig verifies", func(t *testing.T) {
		checkVerifies(t, v, sign(t, jwt.SigningMethodES256, k.ec, "sig", c), now)
	})
	t.Run("a secret key published in the JWKS never verifies", func(t *testing.T) {
		checkRefused(t, v, sign(t, jwt.SigningMethodHS256, []byte("secret"), "hs", c), now, "signature")
	})
	checkRequests(t, srv, 1)
}

func TestRunEndsWithItsContext(t *testing.T) {
	for _, name := range []string{"with a JWKS", "with a secret"} {
		t.Run(name, func(t *testing.T) {
			cfg := tokens.Config{Secret: secret}
			if name == "with a JWKS" {
				cfg = tokens.Config{JWKSURL: startJWKS(t, jwksJSON(t, jwk{pub: keys().ed.Public(), kid: "ed"})).URL, JWKSRefresh: time.Millisecond}
			}
			v, err := tokens.New(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- v.Run(ctx) }()
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Run did not return after its context ended")
			}
		})
	}
}
