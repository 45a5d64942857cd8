package events

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard-dev/switchboard/internal/redistest"
	"github.com/switchboard-dev/switchboard/internal/testutil"
)

func TestDeliversSignedBatchesInOrder(t *testing.T) {
	t.Parallel()
	rdb := newRedis(t, redistest.Start(t))
	recv := newReceiver(t, nil)
	var attempts atomic.Int64
	q := newQueue(t, rdb, Config{Node: "n1", URL: recv.url(), OnAttempt: func(a Attempt) {
		attempts.Add(1)
		if a.Err != nil || a.Status != http.StatusOK || a.Events < 1 || a.Events > MaxBatch {
			t.Errorf("attempt %+v", a)
		}
	}})
	ctx := context.Background()

	// Every type of event, with the fields the receiver must see unchanged.
	at := time.Date(2025, 1, 2, 3, 4, 5, 678_900_000, time.FixedZone("X", 3600))
	typed := []Event{
		{Type: UserOnline, User: "alice", Time: at},
		{Type: RoomJoined, User: "alice", Room: "lobby", By: ByClient},
		{Type: RoomLeft, User: "alice", Room: "lobby", By: ByAPI},
		{Type: ClientEvent, User: "alice", Name: "order.paid", Data: json.RawMessage(`{"order": 42, "s":"é\u2028"}`)},
		{Type: UserOffline, User: "alice"},
	}
	for _, e := range typed {
		if err := q.Emit(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	// Enough events of few users that each shard needs several requests.
	const n = 600
	emitN(t, q, users(5), n)
	start(t, q)

	testutil.WaitFor(t, 10*time.Second, func() bool { return recv.distinct() == n+len(typed) }, "every event delivered")
	events, counts := recv.got()
	for id, c := range counts {
		if c != 1 {
			t.Errorf("event %s delivered %d times to a receiver that never failed", id, c)
		}
	}
	checkOrder(t, events)
	var alice []Event
	for _, e := range events {
		if e.User == "alice" {
			alice = append(alice, e)
		}
	}
	if len(alice) != len(typed) {
		t.Fatalf("alice's events: %+v", alice)
	}
	for i, want := range typed {
		got := alice[i]
		if got.Type != want.Type || got.User != want.User || got.Node != "n1" || got.Room != want.Room || got.By != want.By || got.Name != want.Name {
			t.Errorf("event %d: got %+v, want %+v", i, got, want)
		}
	}
	if got := alice[0].Time; !got.Equal(time.Date(2025, 1, 2, 2, 4, 5, 678_000_000, time.UTC)) {
		t.Errorf("time %v: want ms precision in UTC", got)
	}
	if string(alice[3].Data) != `{"order":42,"s":"é\u2028"}` {
		t.Errorf("data %s", alice[3].Data)
	}
	if recv.maxBatch > MaxBatch || recv.maxBatch < 50 {
		t.Errorf("largest request had %d events; want batches up to %d", recv.maxBatch, MaxBatch)
	}
	testutil.WaitFor(t, 5*time.Second, func() bool { l, p := pending(t, q); return l == 0 && p == 0 }, "delivered events acked and deleted")
	testutil.WaitFor(t, 5*time.Second, func() bool { return q.Stats().Sent == n+int64(len(typed)) }, "every event counted as sent")
	st := q.Stats()
	if st.Queued != n+int64(len(typed)) || st.Sent != st.Queued || st.Retried != 0 || st.Dropped() != 0 || st.Shards != 16 {
		t.Errorf("stats %+v", st)
	}
	if attempts.Load() != int64(recv.requestCount()) {
		t.Errorf("OnAttempt called %d times for %d requests", attempts.Load(), recv.requestCount())
	}
	if b, err := q.Backlog(ctx); err != nil || b != 0 {
		t.Errorf("backlog %d, %v", b, err)
	}
	t.Logf("%d events in %d requests, largest %d events, lag of the last %s", recv.distinct(), recv.requestCount(), recv.maxBatch, st.Lag)
}

func TestBatchBytesAndUnsignedRequests(t *testing.T) {
	t.Parallel()
	rdb := newRedis(t, redistest.Start(t))
	recv := unstartedReceiver(t, nil)
	recv.secret = "" // the receiver then insists on no signature
	recv.srv.Start()
	q, err := New(rdb, Config{URL: recv.url(), MaxBatchBytes: 2000, Shards: 1, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	pad := strings.Repeat("x", 300)
	for i := range 40 {
		if err := q.Emit(context.Background(), Event{Type: ClientEvent, User: "bob", Name: "big",
			Data: json.RawMessage(`{"seq":` + strconv.Itoa(i) + `,"pad":"` + pad + `"}`)}); err != nil {
			t.Fatal(err)
		}
	}
	start(t, q)
	testutil.WaitFor(t, 10*time.Second, func() bool { return recv.distinct() == 40 }, "every event delivered")
	if recv.maxBody > 2000 {
		t.Errorf("body of %d bytes, over MaxBatchBytes", recv.maxBody)
	}
	events, _ := recv.got()
	checkOrder(t, events)
}

func TestSurvivesReceiverFailingEveryOtherRequestAndStalling(t *testing.T) {
	t.Parallel()
	rdb := newRedis(t, redistest.Start(t))
	const stall = 15 * time.Second
	recv := newReceiver(t, func(n int) reply {
		switch {
		case n == 2:
			return reply{stall: stall}
		case n%2 == 1:
			return reply{status: http.StatusInternalServerError}
		}
		return reply{}
	})
	var timeouts atomic.Int64
	// The documented 10s timeout (the default; docs/protocol.md, "Backend events"). Retries are capped at 2s instead of 30s:
	// with half the requests failing, some shard fails several times in a row, and its
	// exponential backoff would otherwise dominate the test's duration.
	q, err := New(rdb, Config{Node: "n1", URL: recv.url(), Secret: testSecret, Logger: testLogger(t),
		RetryMin: 100 * time.Millisecond, RetryMax: 2 * time.Second, OnAttempt: func(a Attempt) {
			if a.Status == 0 && errors.Is(a.Err, context.DeadlineExceeded) && a.Duration >= 10*time.Second {
				timeouts.Add(1)
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	start(t, q)
	const n = 1000
	emitN(t, q, users(40), n)
	testutil.WaitFor(t, 60*time.Second, func() bool { return recv.distinct() == n }, "all 1,000 events")
	took := time.Since(t0)
	events, counts := recv.got()
	checkOrder(t, events)
	dups := 0
	for _, c := range counts {
		dups += c - 1
	}
	if timeouts.Load() != 1 {
		t.Errorf("%d requests timed out after 10s; want the stalled one", timeouts.Load())
	}
	if took < 10*time.Second {
		t.Errorf("took %s: the stalled request cannot have been retried before its 10s timeout", took)
	}
	testutil.WaitFor(t, 5*time.Second, func() bool { return q.Stats().Sent == n }, "every event counted as sent")
	st := q.Stats()
	if st.Retried < int64(recv.requestCount()/2) || st.Sent != n || st.Dropped() != 0 {
		t.Errorf("stats %+v for %d requests", st, recv.requestCount())
	}
	testutil.WaitFor(t, 5*time.Second, func() bool { l, p := pending(t, q); return l == 0 && p == 0 }, "queue empty")
	t.Logf("1000 events, deduped %d, duplicates %d, %d requests (%d failed), %s", len(counts), dups, recv.requestCount(), st.Retried, took.Round(time.Millisecond))
}

func TestRetriesEveryKindOfFailure(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	fails := []struct {
		name  string
		reply reply
	}{
		{"a 302 redirect, never followed", reply{status: http.StatusFound}},
		{"a 400", reply{status: http.StatusBadRequest}},
		{"a 500", reply{status: http.StatusInternalServerError}},
		{"a 503 with a body", reply{status: http.StatusServiceUnavailable, body: "try later"}},
		{"garbage instead of HTTP", reply{raw: "SSH-2.0-OpenSSH\r\n\r\n"}},
		{"a connection closed without an answer", reply{status: -1}},
	}
	for i, f := range fails {
		t.Run("retries after "+f.name, func(t *testing.T) {
			t.Parallel()
			recv := newReceiver(t, func(n int) reply {
				if n <= 3 {
					return f.reply
				}
				return reply{body: "}{ not json, still a 200"}
			})
			q := newQueue(t, newRedis(t, srv), Config{Prefix: "t" + strconv.Itoa(i), URL: recv.url(), Shards: 1})
			emitN(t, q, []string{"bob"}, 30)
			start(t, q)
			testutil.WaitFor(t, 10*time.Second, func() bool { return recv.distinct() == 30 }, "every event after the failures")
			testutil.WaitFor(t, 5*time.Second, func() bool { return q.Stats().Sent == 30 }, "every event counted as sent")
			if st := q.Stats(); st.Retried != 3 || st.Sent != 30 {
				t.Errorf("stats %+v: want 3 retries", st)
			}
			if recv.followed != 0 {
				t.Errorf("the redirect was followed")
			}
		})
	}
	t.Run("retries while the connection is refused", func(t *testing.T) {
		t.Parallel()
		addr := freeAddr(t)
		q := newQueue(t, newRedis(t, srv), Config{Prefix: "refused", URL: "http://" + addr + "/hook"})
		emitN(t, q, users(10), 50)
		start(t, q)
		testutil.WaitFor(t, 10*time.Second, func() bool { return q.Stats().Retried >= 20 }, "refused requests retried")
		recv := unstartedReceiver(t, nil)
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Skipf("port %s was taken meanwhile: %v", addr, err)
		}
		recv.srv.Listener = l
		recv.srv.Start()
		testutil.WaitFor(t, 10*time.Second, func() bool { return recv.distinct() == 50 }, "every event once the receiver is up")
	})
}

func TestDropsEventsOlderThanMaxAge(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	ctx := context.Background()

	t.Run("an event queued too long ago is dropped unsent and counted", func(t *testing.T) {
		t.Parallel()
		recv := newReceiver(t, nil)
		q := newQueue(t, newRedis(t, srv), Config{Prefix: "old", URL: recv.url(), MaxAge: time.Hour})
		old, _ := Event{ID: newID(), Type: UserOnline, User: "bob", Node: "n0", Time: time.Now().Add(-2 * time.Hour)}.MarshalJSON()
		oldID := strconv.FormatInt(time.Now().Add(-2*time.Hour).UnixMilli(), 10) + "-0"
		err := q.rdb.XAdd(ctx, &redis.XAddArgs{Stream: q.keys.stream(q.keys.shard("bob")), ID: oldID, Values: []any{"e", string(old)}}).Err()
		if err != nil {
			t.Fatal(err)
		}
		emitN(t, q, []string{"bob", "carol"}, 10)
		start(t, q)
		testutil.WaitFor(t, 10*time.Second, func() bool { return q.Stats().DroppedExpired == 1 && recv.distinct() == 10 }, "old dropped, fresh sent")
		events, _ := recv.got()
		for _, e := range events {
			if e.Type != ClientEvent {
				t.Errorf("the expired event was delivered: %+v", e)
			}
		}
		testutil.WaitFor(t, 5*time.Second, func() bool { l, p := pending(t, q); return l == 0 && p == 0 }, "queue empty")
	})

	t.Run("events that age out while the webhook fails are dropped and counted", func(t *testing.T) {
		t.Parallel()
		recv := newReceiver(t, func(int) reply { return reply{status: http.StatusBadGateway} })
		q := newQueue(t, newRedis(t, srv), Config{Prefix: "aging", URL: recv.url(), MaxAge: time.Second})
		start(t, q)
		emitN(t, q, users(7), 20)
		testutil.WaitFor(t, 10*time.Second, func() bool { return q.Stats().DroppedExpired == 20 }, "all 20 dropped")
		testutil.WaitFor(t, 5*time.Second, func() bool { l, p := pending(t, q); return l == 0 && p == 0 }, "queue empty")
		if st := q.Stats(); st.Sent != 0 || st.Retried == 0 || st.Dropped() != 20 {
			t.Errorf("stats %+v", st)
		}
	})
}

func TestAnotherNodeDeliversWhatADeadNodeLeftPending(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	ctx := context.Background()

	t.Run("a crashed node's leases expire and its pending events are claimed", func(t *testing.T) {
		t.Parallel()
		recv := newReceiver(t, nil)
		rdb := newRedis(t, srv)
		q := newQueue(t, rdb, Config{Prefix: "crash", Node: "survivor", URL: recv.url()})
		emitN(t, q, users(30), 90)
		// The dead node held every lease and had read every event, and then vanished.
		read := 0
		for s := range q.cfg.Shards {
			rdb.Set(ctx, q.keys.owner(s), "dead/1", 1500*time.Millisecond)
			if err := q.ensureGroup(ctx, s); err != nil {
				t.Fatal(err)
			}
			res, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: q.keys.group(), Consumer: "dead",
				Streams: []string{q.keys.stream(s), ">"}, Count: 1000, Block: -1}).Result()
			if err == nil {
				read += len(res[0].Messages)
			}
		}
		if read != 90 {
			t.Fatalf("the dead node read %d events", read)
		}
		t0 := time.Now()
		start(t, q)
		testutil.WaitFor(t, 10*time.Second, func() bool { return recv.distinct() == 90 }, "the dead node's events")
		if took := time.Since(t0); took < time.Second {
			t.Errorf("delivered after %s, before the dead node's leases expired", took)
		}
		testutil.WaitFor(t, 5*time.Second, func() bool { return q.Stats().Sent == 90 }, "every event counted as sent")
		if st := q.Stats(); st.Claimed != 90 || st.Sent != 90 {
			t.Errorf("stats %+v", st)
		}
		testutil.WaitFor(t, 5*time.Second, func() bool { l, p := pending(t, q); return l == 0 && p == 0 }, "queue empty")
	})

	t.Run("events a node read without holding the lease are claimed once idle", func(t *testing.T) {
		t.Parallel()
		recv := newReceiver(t, nil)
		rdb := newRedis(t, srv)
		q := newQueue(t, rdb, Config{Prefix: "zombie", Node: "holder", URL: recv.url(), Shards: 1, PollInterval: time.Hour})
		start(t, q)
		stream := q.keys.stream(0)
		// The lease is taken before its worker creates the group: wait for both.
		testutil.WaitFor(t, 5*time.Second, func() bool {
			groups, err := rdb.XInfoGroups(ctx, stream).Result()
			return q.Stats().Shards == 1 && err == nil && len(groups) == 1
		}, "the shard's lease and its consumer group")
		// Queued behind the holder's back (no wake-up) and read at once by a zombie node.
		ev, _ := Event{ID: newID(), Type: UserOnline, User: "bob", Node: "zombie", Time: time.Now()}.MarshalJSON()
		_, err := rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{"e", string(ev)}})
			p.XReadGroup(ctx, &redis.XReadGroupArgs{Group: q.keys.group(), Consumer: "zombie", Streams: []string{stream, ">"}, Block: -1})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		testutil.WaitFor(t, 10*time.Second, func() bool { return recv.distinct() == 1 }, "the zombie's event")
		if st := q.Stats(); st.Claimed != 1 {
			t.Errorf("stats %+v", st)
		}
		testutil.WaitFor(t, 10*time.Second, func() bool {
			cs, err := rdb.XInfoConsumers(ctx, stream, q.keys.group()).Result()
			return err == nil && len(cs) == 1 && cs[0].Name == "holder"
		}, "the idle zombie consumer pruned")
	})

	t.Run("a node stopped in the middle of a request hands its events over", func(t *testing.T) {
		t.Parallel()
		hang := make(chan struct{})
		var mu sync.Mutex
		hanging := true
		recv := newReceiver(t, func(int) reply {
			mu.Lock()
			defer mu.Unlock()
			if hanging {
				return reply{hang: hang}
			}
			return reply{}
		})
		defer close(hang)
		// A lease round of 1 s (ClaimIdle/3) rather than the default 10 s: node b takes the
		// released shards at its next round, which the wait below must comfortably cover.
		a := newQueue(t, newRedis(t, srv), Config{Prefix: "handover", Node: "a", URL: recv.url(), ClaimIdle: 3 * time.Second})
		b := newQueue(t, newRedis(t, srv), Config{Prefix: "handover", Node: "b", URL: recv.url(), ClaimIdle: 3 * time.Second})
		stopA := start(t, a)
		emitN(t, a, users(20), 60)
		testutil.WaitFor(t, 5*time.Second, func() bool { return recv.requestCount() >= 5 }, "node a's requests hanging")
		// Requests made from now on are answered; node a's, in flight, keep hanging. (Letting
		// them hang until after stopA returned made node b's first requests hang too when b
		// took the released shards in between, and wait out the request timeout.)
		mu.Lock()
		hanging = false
		mu.Unlock()
		start(t, b)
		if took := stopA(); took > time.Second {
			t.Errorf("Run took %s to return with requests in flight", took)
		}
		testutil.WaitFor(t, 10*time.Second, func() bool { return recv.distinct() == 60 }, "every event, by node b")
		if st := b.Stats(); st.Claimed == 0 || st.Shards != 16 {
			t.Errorf("node b stats %+v: want a's pending events claimed and all shards", st)
		}
		events, _ := recv.got()
		checkOrder(t, events)
	})
}

func TestSendersShareTheShards(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	recv := newReceiver(t, nil)
	var qs []*Queue
	var stops []func() time.Duration
	for _, n := range []string{"a", "b", "c"} {
		q := newQueue(t, newRedis(t, srv), Config{Node: n, URL: recv.url()})
		qs = append(qs, q)
		stops = append(stops, start(t, q))
	}
	share := func(qs []*Queue, most int) func() bool {
		return func() bool {
			total := 0
			for _, q := range qs {
				n := q.Stats().Shards
				if n == 0 || n > most {
					return false
				}
				total += n
			}
			return total == 16
		}
	}
	testutil.WaitFor(t, 10*time.Second, share(qs, 6), "16 shards shared by 3 senders, at most 6 each")
	emitN(t, qs[0], users(50), 200)
	testutil.WaitFor(t, 10*time.Second, func() bool { return recv.distinct() == 200 }, "events sent by all")
	stops[2]()
	testutil.WaitFor(t, 10*time.Second, share(qs[:2], 8), "16 shards shared by the 2 left")
	emitN(t, qs[1], users(50), 200)
	testutil.WaitFor(t, 10*time.Second, func() bool { return recv.distinct() == 400 }, "events sent by the 2 left")
}

func TestKeepsSendingThroughARedisRestart(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := newRedis(t, srv)
	recv := newReceiver(t, nil)
	q := newQueue(t, rdb, Config{URL: recv.url()})
	start(t, q)
	emitN(t, q, users(5), 10)
	testutil.WaitFor(t, 5*time.Second, func() bool { return recv.distinct() == 10 }, "events before the outage")

	srv.Stop()
	ctx := context.Background()
	if err := q.Emit(ctx, clientEvent("bob", 100)); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Emit with Redis down: %v, want ErrUnavailable", err)
	}
	if err := q.Presence().Connected(ctx, "bob", "n1", "c1"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Connected with Redis down: %v", err)
	}
	if _, err := q.Presence().Online(ctx, "bob"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Online with Redis down: %v", err)
	}
	if _, err := q.Backlog(ctx); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Backlog with Redis down: %v", err)
	}

	srv.Restart(t) // empty: leases and groups are gone
	i := 200
	testutil.WaitFor(t, 10*time.Second, func() bool {
		i++
		return q.Emit(ctx, clientEvent("bob", i)) == nil
	}, "Emit working again")
	emitN(t, q, users(5), 10)
	testutil.WaitFor(t, 15*time.Second, func() bool { return recv.distinct() == 21 }, "events after the restart")
}

// TestEmitIsNotSlowedByADeadWebhook is not parallel, so that what it measures is the
// queue and not the other tests.
func TestEmitIsNotSlowedByADeadWebhook(t *testing.T) {
	srv := redistest.Start(t)
	measure := func(q *Queue, n int) (p50, p99, worst time.Duration) {
		lat := make([]time.Duration, n)
		for i := range n {
			t0 := time.Now()
			if err := q.Emit(context.Background(), clientEvent("u"+strconv.Itoa(i%100), i)); err != nil {
				t.Fatal(err)
			}
			lat[i] = time.Since(t0)
		}
		slices.Sort(lat)
		return lat[n/2], lat[n*99/100], lat[n-1]
	}
	const n = 3000

	healthy := newReceiver(t, nil)
	q := newQueue(t, newRedis(t, srv), Config{Prefix: "healthy", URL: healthy.url()})
	start(t, q)
	h50, h99, hmax := measure(q, n)

	hang := make(chan struct{})
	defer close(hang)
	dead := newReceiver(t, func(n int) reply {
		if n%2 == 0 {
			return reply{hang: hang} // half never answer, the rest fail
		}
		return reply{status: http.StatusInternalServerError}
	})
	q = newQueue(t, newRedis(t, srv), Config{Prefix: "dead", URL: dead.url(), RetryMin: time.Millisecond, RetryMax: 5 * time.Millisecond})
	start(t, q)
	testutil.WaitFor(t, 5*time.Second, func() bool { return q.Stats().Shards == 16 }, "the sender running")
	d50, d99, dmax := measure(q, n)
	if st := q.Stats(); st.Sent != 0 || dead.requestCount() == 0 {
		t.Errorf("the dead webhook accepted events: %+v", st)
	}
	t.Logf("Emit latency over %d events: healthy webhook p50 %s p99 %s max %s; dead webhook p50 %s p99 %s max %s (%d failed requests meanwhile)",
		n, h50, h99, hmax, d50, d99, dmax, dead.requestCount())
	// Generous bounds: under the race detector a GC pause alone can take tens of ms.
	if d50 > 2*time.Millisecond || d50 > 3*h50+500*time.Microsecond || d99 > 50*time.Millisecond {
		t.Errorf("Emit slowed by a dead webhook: p50 %s p99 %s (healthy p50 %s)", d50, d99, h50)
	}
}
