package events

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/switchboard-dev/switchboard/internal/redistest"
)

// BenchmarkEmit measures queueing one client event on a real redis-server, from parallel
// callers as the service's connections are. The events come from 10,000 users, as a busy
// node's do: one user's stay under its share of the queue (Config.MaxUserBytes), which
// refuses a single user's flood.
func BenchmarkEmit(b *testing.B) {
	q := newQueue(b, newRedis(b, redistest.Start(b)), Config{URL: "http://127.0.0.1:1/hook"})
	var n atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(8) // many connections emit at once
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			if err := q.Emit(context.Background(), clientEvent("u"+strconv.FormatInt(i%10000, 10), int(i))); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkPresence measures a connect storm's presence calls on a real redis-server: many
// connections open and close at once, and their calls share pipelines.
func BenchmarkPresence(b *testing.B) {
	q := newQueue(b, newRedis(b, redistest.Start(b)), Config{})
	p := q.Presence()
	var n atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		user := "u" + strconv.FormatInt(n.Add(1), 10)
		for pb.Next() {
			if err := p.Connected(context.Background(), user, "n1", "c1"); err != nil {
				b.Error(err)
				return
			}
			if err := p.Disconnected(context.Background(), user, "n1", "c1"); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
