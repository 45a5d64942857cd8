package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/service"
	"github.com/switchboard-dev/switchboard/tokens"
)

// writeKey writes key to a file in dir as openssl would (PKCS #8, or the typed block), and
// returns its path and the PEM of its public key.
func writeKey(t *testing.T, dir, name string, key crypto.Signer, typed bool) (string, []byte) {
	t.Helper()
	block := &pem.Block{Type: "PRIVATE KEY"}
	var err error
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if typed {
			block = &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}
		}
	case *ecdsa.PrivateKey:
		if typed {
			block.Type = "EC PRIVATE KEY"
			block.Bytes, err = x509.MarshalECPrivateKey(k)
		}
	}
	if block.Bytes == nil && err == nil {
		block.Bytes, err = x509.MarshalPKCS8PrivateKey(key)
	}
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	return path, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func TestSignerMintsTokensTheServerVerifies(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cases := []struct {
		name  string
		key   crypto.Signer
		typed bool
		alg   string
	}{
		{"an RSA PKCS #8 key signs RS256", rsaKey, false, "RS256"},
		{"an RSA PKCS #1 key signs RS256", rsaKey, true, "RS256"},
		{"an EC P-256 key signs ES256", ecKey, false, "ES256"},
		{"an EC P-256 SEC 1 key signs ES256", ecKey, true, "ES256"},
		{"an Ed25519 key signs EdDSA", edKey, false, "EdDSA"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path, pub := writeKey(t, dir, strings.Repeat("k", i+1)+".pem", tc.key, tc.typed)
			s, err := newSigner("", path, "")
			if err != nil {
				t.Fatal(err)
			}
			if s.alg() != tc.alg {
				t.Fatalf("alg %s, want %s", s.alg(), tc.alg)
			}
			v, err := tokens.New(context.Background(), tokens.Config{PublicKeyPEM: pub})
			if err != nil {
				t.Fatal(err)
			}
			toks, err := s.mintAll(context.Background(), []string{"u1", "u2"})
			if err != nil {
				t.Fatal(err)
			}
			for _, u := range []string{"u1", "u2"} {
				if c, err := v.Verify(context.Background(), toks[u], time.Now()); err != nil || c.Subject != u {
					t.Fatalf("%s's token: %+v, %v", u, c, err)
				}
			}
		})
	}
}

func TestSignerRefusesWhatItCannotSignWith(t *testing.T) {
	dir := t.TempDir()
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p384Path, pub := writeKey(t, dir, "p384.pem", p384, false)
	pubPath := filepath.Join(dir, "pub.pem")
	if err := os.WriteFile(pubPath, pub, 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name                   string
		secret, path, kid, why string
	}{
		{"a secret and a private key together", "s", p384Path, "", "exclusive"},
		{"a kid without a key", "", "", "k1", "--jwt-kid needs"},
		{"a key file that does not exist", "", filepath.Join(dir, "nope.pem"), "", "--jwt-private-key"},
		{"an EC key on P-384", "", p384Path, "", "P-256"},
		{"a public key", "", pubPath, "", "not a private key"},
	}
	for _, tc := range cases {
		t.Run(tc.name+" is refused", func(t *testing.T) {
			if s, err := newSigner(tc.secret, tc.path, tc.kid); err == nil || !strings.Contains(err.Error(), tc.why) {
				t.Fatalf("newSigner = %v, %v; want an error saying %q", s, err, tc.why)
			}
		})
	}
}

// The conns scenario against a node that verifies RS256 tokens with a public key: every
// connection is welcomed with a token the tool signed with the private key; a node with
// another key refuses every one.
func TestConnsWithTokensSignedByAPrivateKey(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path, pub := writeKey(t, dir, "idp.pem", key, false)
	_, otherPub := writeKey(t, dir, "other.pem", other, false)
	node := func(pub []byte) string {
		v, err := tokens.New(context.Background(), tokens.Config{PublicKeyPEM: pub})
		if err != nil {
			t.Fatal(err)
		}
		return startNode(t, service.Config{Tokens: v})
	}

	code, res := runTool(t, "conns", "--url", node(pub), "--conns", "30", "--dialers", "8", "--hold", "0s", "--jwt-private-key", path)
	if code != exitPass || !res.Passed || res.Connect.OK != 30 || res.Params.Auth != "jwt RS256" {
		t.Fatalf("exit %d, passed %v, connect %+v, auth %q, failures %v", code, res.Passed, res.Connect, res.Params.Auth, res.Failures)
	}
	code, res = runTool(t, "conns", "--url", node(otherPub), "--conns", "5", "--dialers", "2", "--hold", "0s", "--jwt-private-key", path)
	if code != exitFail || res.Connect.OK != 0 || res.Connect.Failures["http 401"] != 5 {
		t.Fatalf("against another key: exit %d, connect %+v; want 5 refused with 401", code, res.Connect)
	}
}
