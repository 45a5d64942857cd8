package tokens

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"

	"github.com/golang-jwt/jwt/v5"
)

// minRSABits is the smallest RSA key accepted, from a PEM file or a JWKS: shorter keys are
// within reach of factoring.
const minRSABits = 2048

// asymmetricAlgs are the algorithms a JWKS key may imply (keyAlg, jwkAlg). HS256 is the
// secret's alone.
var asymmetricAlgs = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// keyAlg is the algorithm a public key implies when nothing else says: RS256 for RSA,
// ES256/ES384/ES512 by the EC curve, EdDSA for Ed25519. Any other key, and an RSA key
// shorter than minRSABits, is an error.
func keyAlg(key any) (string, error) {
	switch k := key.(type) {
	case *rsa.PublicKey:
		if n := k.N.BitLen(); n < minRSABits {
			return "", fmt.Errorf("an RSA key of %d bits is too short (at least %d)", n, minRSABits)
		}
		return "RS256", nil
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return "ES256", nil
		case elliptic.P384():
			return "ES384", nil
		case elliptic.P521():
			return "ES512", nil
		}
		return "", fmt.Errorf("the EC curve %s is not supported", k.Curve.Params().Name)
	case ed25519.PublicKey:
		return "EdDSA", nil
	}
	return "", fmt.Errorf("a %T is not a supported signing key (RSA, EC or Ed25519)", key)
}

// parsePublicKeys reads the PEM blocks of pemBytes: public keys (PUBLIC KEY, RSA PUBLIC
// KEY) or certificates, each an RSA key (RS256), an EC P-256 key (ES256) or an Ed25519 key
// (EdDSA). It returns the keys by the algorithm each implies; anything else, a private key
// included, is an error that says what was found.
func parsePublicKeys(pemBytes []byte) (map[string][]jwt.VerificationKey, error) {
	keys := map[string][]jwt.VerificationKey{}
	rest := pemBytes
	for n := 1; ; n++ {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		key, err := pemPublicKey(block)
		if err != nil {
			return nil, fmt.Errorf("PEM block %d: %w", n, err)
		}
		alg, err := keyAlg(key)
		if err != nil {
			return nil, fmt.Errorf("PEM block %d: %w", n, err)
		}
		// A PEM key names no algorithm, so its curve must say the one the contract names.
		if k, ok := key.(*ecdsa.PublicKey); ok && k.Curve != elliptic.P256() {
			return nil, fmt.Errorf("PEM block %d: an EC key on %s; a PEM EC key must be P-256 (ES256)", n, k.Curve.Params().Name)
		}
		keys[alg] = append(keys[alg], key)
	}
	if len(keys) == 0 {
		return nil, errors.New("no PEM public key found")
	}
	return keys, nil
}

// pemPublicKey decodes one PEM block's public key.
func pemPublicKey(b *pem.Block) (any, error) {
	switch b.Type {
	case "PUBLIC KEY":
		return x509.ParsePKIXPublicKey(b.Bytes)
	case "RSA PUBLIC KEY":
		return x509.ParsePKCS1PublicKey(b.Bytes)
	case "CERTIFICATE":
		cert, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, err
		}
		return cert.PublicKey, nil
	case "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", "ENCRYPTED PRIVATE KEY":
		return nil, fmt.Errorf("a %s: give the public key (openssl pkey -pubout), never the private one", b.Type)
	}
	return nil, fmt.Errorf("a %q block, not a PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE", b.Type)
}

// jwkAlg is the algorithm a JWKS key verifies: its alg when present, which must suit the
// key (RS*/PS* for RSA, the curve's ES* for EC, EdDSA for Ed25519), or else the one the
// key implies (keyAlg). An error says why the key is not used.
func jwkAlg(key any, declared string) (string, error) {
	implied, err := keyAlg(key)
	if err != nil || declared == "" || declared == implied {
		return implied, err
	}
	if _, rsaKey := key.(*rsa.PublicKey); rsaKey && slices.Contains([]string{"RS384", "RS512", "PS256", "PS384", "PS512"}, declared) {
		return declared, nil
	}
	return "", fmt.Errorf("its alg %q does not suit the key (%s)", declared, implied)
}
