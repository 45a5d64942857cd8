package subscriptions

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard-dev/switchboard/internal/redistest"
)

// nopSink accepts everything, as a connection with room in its queue does.
type nopSink struct{ n int }

func (s *nopSink) Deliver(Message) bool { s.n++; return true }
func (s *nopSink) Drop(error)           {}

// BenchmarkDispatch measures the Pub/Sub reader's work for one published message: decoding
// its id once and handing the one shared envelope to each local connection of the user.
func BenchmarkDispatch(b *testing.B) {
	for _, conns := range []int{1, 10, 1000} {
		b.Run(fmt.Sprintf("conns=%d", conns), func(b *testing.B) {
			rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
			defer rdb.Close()
			h, err := New(rdb, Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				b.Fatal(err)
			}
			name := h.keys.userChannel("bob")
			c := &channel{name: name, user: "bob", ready: true, readyCh: make(chan struct{})}
			h.channels[name] = c
			for range conns {
				c.subs = append(c.subs, &Subscription{hub: h, user: "bob", sink: &nopSink{}, ch: c, state: stateLive})
			}
			payload := `{"type":"message","id":"1732483200000-0","from":"alice","data":{"text":"hello there"}}`
			msg := &redis.Message{Channel: name, Payload: payload}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				// Ids must grow or the dedupe drops the message; rewrite the sequence part.
				msg.Payload = payload[:len(`{"type":"message","id":"1732483200000-`)] + strconv.Itoa(i+1) + payload[len(`{"type":"message","id":"1732483200000-0`):]
				h.dispatch(msg)
			}
			b.ReportMetric(float64(b.N*conns)/b.Elapsed().Seconds(), "deliveries/s")
		})
	}
}

// BenchmarkConnectStorm subscribes 10,000 users at once, each waiting for Redis to confirm
// its channel, and reports users confirmed per second and SUBSCRIBE commands used.
func BenchmarkConnectStorm(b *testing.B) {
	srv := redistest.Start(b)
	h := startHub(b, srv, func(c *Config) { c.Heartbeat = time.Second })
	rdb := srv.Client(b)
	const users = 10000
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		before := subscribeCalls(b, rdb)
		start := time.Now()
		var wg sync.WaitGroup
		subs := make([]*Subscription, users)
		for u := range users {
			wg.Go(func() {
				sub, _, err := h.Subscribe(ctx, "storm"+strconv.Itoa(i)+"-"+strconv.Itoa(u), "", &nopSink{})
				if err != nil {
					b.Error(err)
					return
				}
				subs[u] = sub
			})
		}
		wg.Wait()
		elapsed := time.Since(start)
		b.ReportMetric(users/elapsed.Seconds(), "users/s")
		b.ReportMetric(float64(subscribeCalls(b, rdb)-before), "SUBSCRIBEs")
		b.StopTimer()
		for _, s := range subs {
			if s != nil {
				s.Close()
			}
		}
		waitFor(b, 30*time.Second, func() bool { h.mu.RLock(); defer h.mu.RUnlock(); return len(h.channels) == 0 }, "unsubscribes")
		b.StartTimer()
	}
}

// BenchmarkPublish measures the delivery script through the shared pipeline with many
// concurrent callers, as concurrent HTTP sends are.
func BenchmarkPublish(b *testing.B) {
	srv := redistest.Start(b)
	h := startHub(b, srv, func(c *Config) { c.Heartbeat = time.Second })
	env := Envelope{From: "svc", Data: []byte(`{"text":"hello there, this is a direct message"}`)}
	var n int64
	var mu sync.Mutex
	b.SetParallelism(8) // 8×GOMAXPROCS concurrent publishers
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		mu.Lock()
		n++
		user := "u" + strconv.FormatInt(n, 10)
		mu.Unlock()
		for pb.Next() {
			if _, err := h.Publish(context.Background(), user, env); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
