package tokens_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
)

// keySet is the private keys the tests sign with. RSA keys take a while to generate under
// -race, so every test shares one set (keys).
type keySet struct {
	rsaA, rsaB, rsaPEM, rsaOther *rsa.PrivateKey
	ec, ecPEM, ecOther           *ecdsa.PrivateKey
	ec384                        *ecdsa.PrivateKey
	ed, edPEM                    ed25519.PrivateKey
	rsa1024                      *rsa.PrivateKey
}

var keys = sync.OnceValue(func() *keySet {
	rsaKey := func(bits int) *rsa.PrivateKey {
		k, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			panic(err)
		}
		return k
	}
	ecKey := func(c elliptic.Curve) *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(c, rand.Reader)
		if err != nil {
			panic(err)
		}
		return k
	}
	edKey := func() ed25519.PrivateKey {
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			panic(err)
		}
		return k
	}
	return &keySet{
		rsaA: rsaKey(2048), rsaB: rsaKey(2048), rsaPEM: rsaKey(2048), rsaOther: rsaKey(2048),
		ec: ecKey(elliptic.P256()), ecPEM: ecKey(elliptic.P256()), ecOther: ecKey(elliptic.P256()),
		ec384: ecKey(elliptic.P384()),
		ed:    edKey(), edPEM: edKey(),
		rsa1024: rsaKey(1024),
	}
})

// pemOf encodes public keys as PEM PUBLIC KEY blocks, as openssl pkey -pubout writes them.
func pemOf(t testing.TB, pubs ...crypto.PublicKey) []byte {
	t.Helper()
	var b bytes.Buffer
	for _, pub := range pubs {
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		if err := pem.Encode(&b, &pem.Block{Type: "PUBLIC KEY", Bytes: der}); err != nil {
			t.Fatal(err)
		}
	}
	return b.Bytes()
}

// jwk is one key of a test JWKS: its public key, kid, and alg and use when set.
type jwk struct {
	pub      crypto.PublicKey
	kid, alg string
	use      jwkset.USE
}

// jwksJSON encodes keys as a JWK Set document with jwkset, as an identity provider serves it.
func jwksJSON(t testing.TB, keys ...jwk) []byte {
	t.Helper()
	store := jwkset.NewMemoryStorage()
	for _, k := range keys {
		j, err := jwkset.NewJWKFromKey(k.pub, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: k.kid, ALG: jwkset.ALG(k.alg), USE: k.use}})
		if err != nil {
			t.Fatal(err)
		}
		if err := store.KeyWrite(context.Background(), j); err != nil {
			t.Fatal(err)
		}
	}
	doc, err := store.JSONPublic(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

// jwksServer serves a JWK Set over real HTTP, counting requests; a test swaps the document
// (rotation) or takes the server down (500).
type jwksServer struct {
	*httptest.Server
	doc      atomic.Pointer[[]byte]
	down     atomic.Bool
	requests atomic.Int64
	// hold, when set, makes each request wait until it is closed.
	hold atomic.Pointer[chan struct{}]
}

func startJWKS(t testing.TB, doc []byte) *jwksServer {
	t.Helper()
	s := &jwksServer{}
	s.doc.Store(&doc)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		if h := s.hold.Load(); h != nil {
			select {
			case <-*h:
			case <-r.Context().Done():
			}
		}
		if s.down.Load() {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(*s.doc.Load())
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) serve(doc []byte) { s.doc.Store(&doc) }

// sign signs claims with key under method, with kid in the header when it is not empty.
func sign(t testing.TB, method jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// valid returns the claims of a token for sub valid for an hour from now, plus extra.
func valid(now time.Time, sub string, extra ...any) jwt.MapClaims {
	c := jwt.MapClaims{"sub": sub, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	for i := 0; i+1 < len(extra); i += 2 {
		c[extra[i].(string)] = extra[i+1]
	}
	return c
}

// metric returns the value of the counter or gauge name in reg, -1 if it is missing.
func metric(t testing.TB, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		m := f.GetMetric()[0]
		if c := m.GetCounter(); c != nil {
			return c.GetValue()
		}
		return m.GetGauge().GetValue()
	}
	return -1
}

// logBuffer is a logger's output, safe to read while the logger writes.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

// rawJSON marshals v, for JWKS documents jwkset would not write (a secret key).
func rawJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
