package subscriptions

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard-dev/switchboard/internal/redistest"
	"github.com/switchboard-dev/switchboard/internal/testutil"
)

// nopSink accepts everything, as a connection with room in its queue does.
type nopSink struct{ n int }

func (s *nopSink) Deliver(Message) bool { s.n++; return true }
func (s *nopSink) Drop(error)           {}

// dispatchFixture builds, without Redis, what the Pub/Sub reader hands a message to: a link
// on which user bob's channel is confirmed, with conns live connections that accept all.
func dispatchFixture(tb testing.TB, conns int) (*link, *channel) {
	tb.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	tb.Cleanup(func() { _ = rdb.Close() })
	h, err := New(rdb, Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		tb.Fatal(err)
	}
	name := h.keys.userChannel("bob")
	l := h.newLink(-1)
	c := newChannel(name, "bob", l)
	c.apply(evSubscribe)
	c.apply(evConfirmed)
	l.channels[name] = c
	for range conns {
		c.subs = append(c.subs, &Subscription{hub: h, user: "bob", sink: &nopSink{}, link: l, ch: c, state: stateLive})
	}
	return l, c
}

// BenchmarkDispatch measures the Pub/Sub reader's work for one published message: decoding
// its id once and handing the one shared envelope to each local connection of the user.
func BenchmarkDispatch(b *testing.B) {
	for _, conns := range []int{1, 10, 1000} {
		b.Run(fmt.Sprintf("conns=%d", conns), func(b *testing.B) {
			l, c := dispatchFixture(b, conns)
			name := c.name
			payload := `{"type":"message","id":"1732483200000-0","from":"alice","data":{"text":"hello there"}}`
			msg := &redis.Message{Channel: name, Payload: payload}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				// Ids must grow or the dedupe drops the message; rewrite the sequence part.
				msg.Payload = payload[:len(`{"type":"message","id":"1732483200000-`)] + strconv.Itoa(i+1) + payload[len(`{"type":"message","id":"1732483200000-0`):]
				l.dispatch(msg)
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
		testutil.WaitFor(b, 30*time.Second, func() bool { return h.channelCount() == 0 }, "unsubscribes")
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

// countSink counts deliveries and closes done at the target.
type countSink struct {
	n      *atomic.Int64
	target int64
	done   chan struct{}
}

func (s countSink) Deliver(Message) bool {
	if s.n.Add(1) == s.target {
		close(s.done)
	}
	return true
}
func (s countSink) Drop(error) {}

// BenchmarkRoomFanout posts to rooms of 100, 1,000 and 10,000 members, every member
// connected to this node, and reports deliveries per second and the time from the post to
// the last member's delivery.
func BenchmarkRoomFanout(b *testing.B) {
	for _, size := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprintf("members=%d", size), func(b *testing.B) {
			srv := redistest.Start(b)
			h := startHub(b, srv, func(c *Config) { c.Heartbeat = time.Second })
			ctx := context.Background()
			var count atomic.Int64
			room := "r"
			sinks := make([]*countSink, size)
			var wg sync.WaitGroup
			for i := range size {
				user := "m" + strconv.Itoa(i)
				if _, err := h.Join(ctx, room, user); err != nil {
					b.Fatal(err)
				}
				sinks[i] = &countSink{n: &count}
				wg.Go(func() {
					sub, _, err := h.Subscribe(ctx, user, "", sinks[i])
					if err != nil {
						b.Error(err)
						return
					}
					sub.Start()
					b.Cleanup(sub.Close)
				})
			}
			wg.Wait()
			env := Envelope{From: "system", Data: []byte(`{"text":"room message"}`)}
			var last time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				count.Store(0)
				d := make(chan struct{})
				for _, s := range sinks {
					s.target, s.done = int64(size), d
				}
				b.StartTimer()
				start := time.Now()
				n, err := h.PublishRoom(ctx, room, env, false)
				if err != nil || n != size {
					b.Fatalf("fan-out: %d %v", n, err)
				}
				<-d
				last = time.Since(start)
			}
			b.ReportMetric(float64(size*b.N)/b.Elapsed().Seconds(), "deliveries/s")
			b.ReportMetric(float64(last.Microseconds())/1000, "ms-to-last")
		})
	}
}

// BenchmarkEnvelope measures the encoding a message gets once, when it is published (its
// tail), and the reading of its id the Pub/Sub reader does once per published message.
func BenchmarkEnvelope(b *testing.B) {
	env := Envelope{From: "billing", Data: []byte(`{"text":"hello there, this is a direct message of a typical size"}`)}
	b.Run("encode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = env.tail()
		}
	})
	b.Run("encode-binary", func(b *testing.B) {
		bin := Envelope{Binary: make([]byte, 96)}
		b.ReportAllocs()
		for b.Loop() {
			_ = bin.tail()
		}
	})
	payload := string(assemble("1764131000000-42", env.tail()))
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := decodeMessage(payload); !ok {
				b.Fatal("not decoded")
			}
		}
	})
}
