package tokens_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/switchboard-dev/switchboard/tokens"
)

// BenchmarkVerify measures Verify per connect, by algorithm: the JSON check, the signature
// and the claims (with a rooms grant).
func BenchmarkVerify(b *testing.B) {
	k := keys()
	now := time.Now()
	claims := valid(now, "dave", "rooms", []string{"team-42.*", "lobby"}, "dm", []string{"support"})
	jwksURL := startJWKS(b, jwksJSON(b, jwk{pub: k.rsaA.Public(), kid: "a"})).URL
	cases := []struct {
		name  string
		cfg   tokens.Config
		token string
	}{
		{"HS256", tokens.Config{Secret: secret}, sign(b, jwt.SigningMethodHS256, secret, "", claims)},
		{"RS256-2048", tokens.Config{PublicKeyPEM: pemOf(b, k.rsaPEM.Public())}, sign(b, jwt.SigningMethodRS256, k.rsaPEM, "", claims)},
		{"ES256", tokens.Config{PublicKeyPEM: pemOf(b, k.ecPEM.Public())}, sign(b, jwt.SigningMethodES256, k.ecPEM, "", claims)},
		{"EdDSA", tokens.Config{PublicKeyPEM: pemOf(b, k.edPEM.Public())}, sign(b, jwt.SigningMethodEdDSA, k.edPEM, "", claims)},
		{"RS256-2048-JWKS", tokens.Config{JWKSURL: jwksURL}, sign(b, jwt.SigningMethodRS256, k.rsaA, "a", claims)},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			v, err := tokens.New(context.Background(), tc.cfg)
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Verify(ctx, tc.token, now); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// grantPatterns is a generous grant: ten exact rooms and five prefixes.
func grantPatterns(tb testing.TB) tokens.Patterns {
	list := []string{"team-1.*", "team-2.*", "team-3.*", "project-x.*", "support-"}
	for i := range 10 {
		list = append(list, fmt.Sprintf("room-%d", i))
	}
	p, err := tokens.ParsePatterns(list)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// BenchmarkPatternsMatch measures the permission check of a join or a client DM; a miss
// is the worst case, every prefix compared.
func BenchmarkPatternsMatch(b *testing.B) {
	p := grantPatterns(b)
	for _, id := range []string{"room-7", "team-3.general", "nobody-matches-this-id"} {
		b.Run(id, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				p.Match(id)
			}
		})
	}
}

func TestPatternsMatchAllocatesNothing(t *testing.T) {
	p := grantPatterns(t)
	hits := 0
	allocs := testing.AllocsPerRun(1000, func() {
		for _, id := range []string{"room-7", "team-3.general", "nobody-matches-this-id"} {
			if p.Match(id) {
				hits++
			}
		}
	})
	if hits != 2*1001 { // AllocsPerRun runs once more to warm up
		t.Fatalf("%d matches, want %d: the check measured something else", hits, 2*1001)
	}
	if allocs != 0 {
		t.Fatalf("Match allocates %v times per 3 calls, want 0", allocs)
	}
}
