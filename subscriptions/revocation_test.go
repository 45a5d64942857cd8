package subscriptions

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/internal/redistest"
)

func TestTokenRevocationIsStoredUnderThePrefixWithItsTTL(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	h := startHub(t, srv)
	ctx := context.Background()

	if _, revoked, err := h.TokensRevokedBefore(ctx, "alice"); err != nil || revoked {
		t.Fatalf("before any revocation: revoked %v, err %v", revoked, err)
	}
	at := time.UnixMilli(time.Now().UnixMilli())
	if err := h.RevokeTokens(ctx, "alice", at, time.Minute); err != nil {
		t.Fatal(err)
	}
	got, revoked, err := h.TokensRevokedBefore(ctx, "alice")
	if err != nil || !revoked || !got.Equal(at) {
		t.Fatalf("after revoking at %v: %v, %v, %v", at, got, revoked, err)
	}
	if _, revoked, _ := h.TokensRevokedBefore(ctx, "bob"); revoked {
		t.Fatal("bob's tokens are revoked too")
	}
	key := h.keys.revokedKey("alice")
	if ttl := rdb.PTTL(ctx, key).Val(); ttl <= 50*time.Second || ttl > time.Minute {
		t.Fatalf("the revocation %s lives %v, want about a minute", key, ttl)
	}
	if want := "{t:"; key[:len(want)] != want {
		t.Fatalf("key %q is not under the hub's prefix", key)
	}
	if err := h.RevokeTokens(ctx, "bob:x", at, time.Minute); !errors.Is(err, ErrInvalidID) {
		t.Fatalf("revoking an invalid id: %v", err)
	}

	srv.Stop()
	if _, _, err := h.TokensRevokedBefore(ctx, "alice"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("with Redis down: %v, want ErrUnavailable (the caller refuses: fail closed)", err)
	}
}

// BenchmarkTokensRevokedBefore is what a token connect pays for the revocation check: one
// GET, a round trip to Redis.
func BenchmarkTokensRevokedBefore(b *testing.B) {
	srv := redistest.Start(b)
	h := startHub(b, srv)
	ctx := context.Background()
	if err := h.RevokeTokens(ctx, "alice", time.Now(), time.Minute); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := h.TokensRevokedBefore(ctx, "alice"); err != nil {
			b.Fatal(err)
		}
	}
}
