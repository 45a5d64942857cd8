package service

import (
	"context"
	"testing"

	"github.com/switchboard-dev/switchboard/internal/redistest"
)

// BenchmarkUserLimitCheck measures one per-user limit check alone: one script call to a
// redis-server on loopback, the cost added to every client send, join and event. Compare a
// plain PING on the same client for the round trip itself.
func BenchmarkUserLimitCheck(b *testing.B) {
	rdb := redistest.Start(b).Client(b)
	l, err := NewLimiter(rdb, LimiterConfig{Prefix: "bench", Sends: Limit{Rate: 1 << 30, Per: 1e9, Burst: 1 << 30}})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.Run("limit check", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if err := l.allow(ctx, limitKindSend, "user:bench", l.cfg.Sends); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("PING", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if err := rdb.Ping(ctx).Err(); err != nil {
				b.Fatal(err)
			}
		}
	})
}
