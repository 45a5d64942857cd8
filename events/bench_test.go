package events

import (
	"context"
	"testing"

	"github.com/switchboard-dev/switchboard/internal/redistest"
)

// BenchmarkEmit measures queueing one client event on a real redis-server, from parallel
// callers as the service's connections are.
func BenchmarkEmit(b *testing.B) {
	q := newQueue(b, newRedis(b, redistest.Start(b)), Config{URL: "http://127.0.0.1:1/hook"})
	e := clientEvent("bob", 1)
	b.ReportAllocs()
	b.SetParallelism(8) // many connections emit at once
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := q.Emit(context.Background(), e); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
