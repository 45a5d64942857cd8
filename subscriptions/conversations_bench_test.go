package subscriptions

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard-dev/switchboard/internal/redistest"
)

// redisCPU returns the CPU time the Redis server has used (INFO cpu: user + system).
func redisCPU(tb testing.TB, rdb *redis.Client) time.Duration {
	tb.Helper()
	info, err := rdb.Info(context.Background(), "cpu").Result()
	if err != nil {
		tb.Fatal(err)
	}
	var sum float64
	for _, line := range strings.Split(info, "\r\n") {
		for _, k := range []string{"used_cpu_user:", "used_cpu_sys:"} {
			if v, ok := strings.CutPrefix(line, k); ok {
				f, _ := strconv.ParseFloat(v, 64)
				sum += f
			}
		}
	}
	return time.Duration(sum * float64(time.Second))
}

// roomOfSinks joins size members to room, each subscribed on h with a countSink.
func roomOfSinks(b *testing.B, h *Hub, room string, size int, count *atomic.Int64) []*countSink {
	ctx := context.Background()
	sinks := make([]*countSink, size)
	var wg sync.WaitGroup
	for i := range size {
		user := "m" + strconv.Itoa(i)
		if _, err := h.Join(ctx, room, user); err != nil {
			b.Fatal(err)
		}
		sinks[i] = &countSink{n: count}
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
	return sinks
}

// BenchmarkRoomSendStoredVsEphemeral posts to a room of 1,000 members, all connected to this
// node, stored (every member's stream, the room's history) and ephemeral (published only),
// and reports deliveries per second and the Redis server's CPU time per send.
func BenchmarkRoomSendStoredVsEphemeral(b *testing.B) {
	const size = 1000
	for _, ephemeral := range []bool{false, true} {
		b.Run(fmt.Sprintf("ephemeral=%v", ephemeral), func(b *testing.B) {
			srv := redistest.Start(b)
			h := startHub(b, srv, func(c *Config) { c.Heartbeat = time.Second })
			rdb := srv.Client(b)
			var count atomic.Int64
			sinks := roomOfSinks(b, h, "r", size, &count)
			env := Envelope{From: "m0", Data: []byte(`{"typing":true}`)}
			ctx := context.Background()
			var cpu time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				count.Store(0)
				d := make(chan struct{})
				for _, s := range sinks {
					s.target, s.done = int64(size), d
				}
				before := redisCPU(b, rdb)
				b.StartTimer()
				res, err := h.PublishRoomMessage(ctx, "r", env, RoomSend{RequireMember: true, Ephemeral: ephemeral})
				if err != nil || res.Recipients != size {
					b.Fatalf("send: %+v %v", res, err)
				}
				<-d
				b.StopTimer()
				cpu += redisCPU(b, rdb) - before
				b.StartTimer()
			}
			b.ReportMetric(float64(size*b.N)/b.Elapsed().Seconds(), "deliveries/s")
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "redis-cpu-µs/send")
		})
	}
}

// BenchmarkDirectWithCopy sends direct messages between 997 senders and 1,000 recipients from
// 16 goroutines, plain (Publish, as a
// backend's) and with the sender's copy (PublishDM, as a client's), and reports the Redis
// server's CPU time per message sent.
func BenchmarkDirectWithCopy(b *testing.B) {
	for _, copied := range []bool{false, true} {
		b.Run(fmt.Sprintf("copy=%v", copied), func(b *testing.B) {
			srv := redistest.Start(b)
			h := startHub(b, srv, func(c *Config) { c.Heartbeat = time.Second })
			rdb := srv.Client(b)
			data := []byte(`{"text":"hello there, this is a direct message of a typical size"}`)
			var n atomic.Int64
			before := redisCPU(b, rdb)
			b.SetParallelism(16)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				for pb.Next() {
					// 997 senders and 1,000 recipients: every stream grows alike, so that
					// neither case measures one hot stream against many cold ones.
					k := n.Add(1)
					to := "u" + strconv.FormatInt(k%1000, 10)
					env := Envelope{From: "s" + strconv.FormatInt(k%997, 10), Data: data}
					var err error
					if copied {
						_, err = h.PublishDM(ctx, to, env)
					} else {
						_, err = h.Publish(ctx, to, env)
					}
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			cpu := redisCPU(b, rdb) - before
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "redis-cpu-µs/msg")
		})
	}
}

// BenchmarkRoomPresence asks which of a 1,000-member room's members are online (half of
// them are connected to this node).
func BenchmarkRoomPresence(b *testing.B) {
	srv := redistest.Start(b)
	h := startHub(b, srv, func(c *Config) { c.Heartbeat = time.Second })
	ctx := context.Background()
	var count atomic.Int64
	roomOfSinks(b, h, "online", 500, &count) // m0..m499 connected
	for i := 500; i < 1000; i++ {
		if _, err := h.Join(ctx, "online", "m"+strconv.Itoa(i)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		online, err := h.RoomPresence(ctx, "online", "m0")
		if err != nil || len(online) != 500 {
			b.Fatalf("presence: %d online, %v", len(online), err)
		}
	}
}

// BenchmarkRoomHistory reads pages of 50 from a room of 1,000 kept messages, from 16
// goroutines, as members opening the room do, and reports the p99 of one read.
func BenchmarkRoomHistory(b *testing.B) {
	srv := redistest.Start(b)
	h := startHub(b, srv, func(c *Config) { c.Heartbeat = time.Second })
	ctx := context.Background()
	if _, err := h.Join(ctx, "r", "alice"); err != nil {
		b.Fatal(err)
	}
	env := Envelope{From: "alice", Data: []byte(`{"text":"hello there, this is a room message of a typical size"}`)}
	for range 1000 {
		if _, err := h.PublishRoom(ctx, "r", env, true); err != nil {
			b.Fatal(err)
		}
	}
	var mu sync.Mutex
	var lat []time.Duration
	rdb := srv.Client(b)
	before := redisCPU(b, rdb)
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var mine []time.Duration
		for pb.Next() {
			start := time.Now()
			page, err := h.RoomHistory(ctx, "r", HistoryQuery{Limit: 50, MaxBytes: 256 << 10, Member: "alice"})
			if err != nil || len(page.Messages) != 50 {
				b.Errorf("history: %d, %v", len(page.Messages), err)
				return
			}
			mine = append(mine, time.Since(start))
		}
		mu.Lock()
		lat = append(lat, mine...)
		mu.Unlock()
	})
	b.StopTimer()
	b.ReportMetric(float64((redisCPU(b, rdb)-before).Microseconds())/float64(b.N), "redis-cpu-µs/read")
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "reads/s")
}
