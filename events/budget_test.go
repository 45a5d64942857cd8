package events

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
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

// usedMemory is Redis's INFO memory used_memory.
func usedMemory(t testing.TB, rdb redis.UniversalClient) int64 {
	t.Helper()
	info, err := rdb.Info(context.Background(), "memory").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no used_memory in %q", info)
	return 0
}

// checkAccounting fails unless every shard's byte counters equal what its entries say they
// cost, in total and per user, and returns the total.
func checkAccounting(t testing.TB, q *Queue) int64 {
	t.Helper()
	ctx := context.Background()
	var all int64
	for s := range q.cfg.Shards {
		msgs, err := q.rdb.XRange(ctx, q.keys.stream(s), "-", "+").Result()
		if err != nil {
			t.Fatal(err)
		}
		var total int64
		users := map[string]int64{}
		for _, m := range msgs {
			e, _ := newEntry(m)
			c, _ := strconv.ParseInt(e.cost, 10, 64)
			total += c
			if c > 0 {
				users[e.user] += c
			}
		}
		counted, err := q.rdb.Get(ctx, q.keys.bytes(s)).Int64()
		if err != nil && !errors.Is(err, redis.Nil) {
			t.Fatal(err)
		}
		if counted != total {
			t.Fatalf("shard %d: counter %d bytes, entries cost %d", s, counted, total)
		}
		hash, err := q.rdb.HGetAll(ctx, q.keys.userBytes(s)).Result()
		if err != nil {
			t.Fatal(err)
		}
		if len(hash) != len(users) {
			t.Fatalf("shard %d: users counted %v, users queued %v", s, hash, users)
		}
		for u, v := range hash {
			if n, _ := strconv.ParseInt(v, 10, 64); n != users[u] {
				t.Fatalf("shard %d: user %s counted %d bytes, its entries cost %d", s, u, n, users[u])
			}
		}
		all += total
	}
	return all
}

// bigEvent is a client event of about 8 KB, as in the flood of issue 13.
func bigEvent(user string, n int) Event {
	return Event{Type: ClientEvent, User: user, Name: "flood",
		Data: json.RawMessage(`{"seq":` + strconv.Itoa(n) + `,"pad":"` + strings.Repeat("x", 8<<10) + `"}`)}
}

// switchedReceiver answers 503 while down is set, as a backend that is down.
func switchedReceiver(t testing.TB, down *atomic.Bool) *receiver {
	return newReceiver(t, func(int) reply {
		if down.Load() {
			return reply{status: http.StatusServiceUnavailable}
		}
		return reply{}
	})
}

func TestAFloodIsRefusedPastItsShareAndTrimsNoOneElsesEvents(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := newRedis(t, srv)
	var down atomic.Bool
	down.Store(true)
	recv := switchedReceiver(t, &down)
	const budget, share = 1 << 20, 128 << 10
	// One shard: every user shares it, the worst case for a flood. Redis's used_memory also
	// holds transient buffers (tens of KB here), so the reserve is larger than the default
	// to keep what the test compares clear of them.
	const reserve = 0.4
	q := newQueue(t, rdb, Config{URL: recv.url(), Shards: 1, MaxBytes: budget, MaxUserBytes: share, SystemReserve: reserve})
	start(t, q)
	ctx := context.Background()

	if err := q.Emit(ctx, Event{Type: RoomJoined, User: "bob", Room: "before", By: ByAPI}); err != nil {
		t.Fatal(err)
	}
	before := usedMemory(t, rdb)

	// One user floods 8 KB events: refused, not queued, past its share.
	const flood = 1000
	accepted := 0
	for i := range flood {
		err := q.Emit(ctx, bigEvent("mallory", i))
		switch {
		case err == nil:
			accepted++
		case errors.Is(err, ErrQueueFull) && strings.Contains(err.Error(), "user_share"):
		default:
			t.Fatalf("flood event %d: %v", i, err)
		}
	}
	if st := q.Stats(); accepted == 0 || accepted > share/(8<<10) || st.DroppedUserShare != int64(flood-accepted) {
		t.Fatalf("%d of %d flood events accepted; stats %+v", accepted, flood, st)
	}
	// Many users flooding together fill only the part of the queue that is not reserved for
	// the server's own events.
	sybils := 0
	for u := 0; q.Stats().DroppedQueueBytes == 0; u++ {
		if u == 100 {
			t.Fatal("100 flooding users never filled the queue")
		}
		for i := 0; ; i++ {
			err := q.Emit(ctx, bigEvent("sybil"+strconv.Itoa(u), i))
			if errors.Is(err, ErrQueueFull) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			sybils++
		}
	}
	// Small events fill what the 8 KB ones left, to the last byte clients may use.
	for i := 0; ; i++ {
		err := q.Emit(ctx, clientEvent("filler"+strconv.Itoa(i), i))
		if errors.Is(err, ErrQueueFull) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		sybils++
	}
	peak := usedMemory(t, rdb)
	queued := checkAccounting(t, q)
	if float64(queued) > budget*(1-reserve) {
		t.Errorf("client events hold %d bytes, more than the part of %d not reserved", queued, budget)
	}
	// The server's events still fit: nothing was trimmed to make room, nothing refused.
	if err := q.Emit(ctx, Event{Type: RoomJoined, User: "bob", Room: "after", By: ByClient}); err != nil {
		t.Fatalf("room.joined after the flood: %v", err)
	}
	if err := q.Presence().Connected(ctx, "carol", "n1", "c1"); err != nil {
		t.Fatal(err)
	}
	growth := peak - before
	t.Logf("flood of %d x 8 KB by one user: %d accepted, %d refused (user_share); %d more accepted from other users until %d refused (queue_bytes); Redis used_memory +%d bytes (budget %d, counted %d)",
		flood, accepted, flood-accepted, sybils, q.Stats().DroppedQueueBytes, growth, budget, queued)
	if growth > budget {
		t.Errorf("Redis grew %d bytes, over the budget of %d", growth, budget)
	}

	down.Store(false)
	want := 2 + 1 + accepted + sybils
	testutil.WaitFor(t, 20*time.Second, func() bool { return recv.distinct() == want }, "every queued event delivered")
	var bob []string
	events, _ := recv.got()
	for _, e := range events {
		if e.User == "bob" {
			bob = append(bob, e.Room)
		}
		if e.User == "carol" && e.Type != UserOnline {
			t.Errorf("carol: %+v", e)
		}
	}
	if strings.Join(bob, ",") != "before,after" {
		t.Errorf("bob's room.joined events: %v", bob)
	}
	testutil.WaitFor(t, 5*time.Second, func() bool { l, p := pending(t, q); return l == 0 && p == 0 }, "queue empty")
	if n, err := q.Bytes(ctx); err != nil || n != 0 {
		t.Errorf("after draining, the queue counts %d bytes (%v)", n, err)
	}
	if n, _ := rdb.Exists(ctx, q.keys.bytes(0), q.keys.userBytes(0)).Result(); n != 0 {
		t.Errorf("%d byte counters left after draining", n)
	}
}

func TestByteCountersStayExactThroughCrashesAndTakeovers(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	ctx := context.Background()

	t.Run("a crashed node's events are claimed, delivered and released once", func(t *testing.T) {
		t.Parallel()
		recv := newReceiver(t, nil)
		rdb := newRedis(t, srv)
		q := newQueue(t, rdb, Config{Prefix: "crash", Node: "survivor", URL: recv.url()})
		for i := range 90 {
			e := clientEvent("u"+strconv.Itoa(i%30), i)
			if i%3 == 0 {
				e = bigEvent(e.User, i)
			}
			if err := q.Emit(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
		queued := checkAccounting(t, q)
		// The dead node held every lease and had read every event, and then vanished.
		var read []redis.XMessage
		for s := range q.cfg.Shards {
			rdb.Set(ctx, q.keys.owner(s), "dead/1", 1500*time.Millisecond)
			if err := q.ensureGroup(ctx, s); err != nil {
				t.Fatal(err)
			}
			res, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: q.keys.group(), Consumer: "dead",
				Streams: []string{q.keys.stream(s), ">"}, Count: 1000, Block: -1}).Result()
			if err == nil {
				read = append(read, res[0].Messages...)
			}
		}
		if len(read) != 90 || checkAccounting(t, q) != queued {
			t.Fatalf("the dead node read %d events; reading changed the counters", len(read))
		}
		start(t, q)
		testutil.WaitFor(t, 10*time.Second, func() bool { return recv.distinct() == 90 }, "the dead node's events")
		testutil.WaitFor(t, 5*time.Second, func() bool { l, p := pending(t, q); return l == 0 && p == 0 }, "queue empty")
		if n, err := q.Bytes(ctx); err != nil || n != 0 {
			t.Fatalf("after the takeover, the queue counts %d bytes (%v)", n, err)
		}
		// The dead node comes back and acknowledges what it had read: nothing is released twice.
		for _, m := range read {
			e, _ := newEntry(m)
			s := q.keys.shard(e.user)
			freed, err := ackScript.Run(ctx, rdb, q.keys.queue(s), q.keys.group(), e.id, e.user, e.cost).Int64()
			if err != nil || freed != 0 {
				t.Fatalf("a second ack of %s released %d bytes (%v)", e.id, freed, err)
			}
		}
		if n, err := q.Bytes(ctx); err != nil || n != 0 {
			t.Fatalf("after late acks, the queue counts %d bytes (%v)", n, err)
		}
		checkAccounting(t, q)
	})

	t.Run("a node stopped in the middle of a request hands over without drift", func(t *testing.T) {
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
		a := newQueue(t, newRedis(t, srv), Config{Prefix: "handover", Node: "a", URL: recv.url(), ClaimIdle: 3 * time.Second})
		b := newQueue(t, newRedis(t, srv), Config{Prefix: "handover", Node: "b", URL: recv.url(), ClaimIdle: 3 * time.Second})
		stopA := start(t, a)
		for i := range 60 {
			if err := a.Emit(ctx, bigEvent("u"+strconv.Itoa(i%20), i)); err != nil {
				t.Fatal(err)
			}
		}
		testutil.WaitFor(t, 5*time.Second, func() bool { return recv.requestCount() >= 5 }, "node a's requests hanging")
		checkAccounting(t, a)
		// Requests made from now on are answered; node a's, in flight, keep hanging (see the
		// same step in TestAnotherNodeDeliversWhatADeadNodeLeftPending).
		mu.Lock()
		hanging = false
		mu.Unlock()
		start(t, b)
		stopA()
		testutil.WaitFor(t, 10*time.Second, func() bool { return recv.distinct() == 60 }, "every event, by node b")
		testutil.WaitFor(t, 5*time.Second, func() bool { l, p := pending(t, b); return l == 0 && p == 0 }, "queue empty")
		if n, err := b.Bytes(ctx); err != nil || n != 0 {
			t.Fatalf("after the hand-over, the queue counts %d bytes (%v)", n, err)
		}
		checkAccounting(t, b)
	})
}

func TestByteCountersExpireAndHealThemselves(t *testing.T) {
	t.Parallel()
	rdb := newRedis(t, redistest.Start(t))
	q := newQueue(t, rdb, Config{URL: "http://127.0.0.1:1/", Shards: 1, MaxBytes: 64 << 10, MaxUserBytes: 64 << 10, MaxAge: time.Hour})
	ctx := context.Background()
	if err := q.Emit(ctx, clientEvent("bob", 1)); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{q.keys.bytes(0), q.keys.userBytes(0)} {
		if ttl, err := rdb.PTTL(ctx, k).Result(); err != nil || ttl <= time.Hour || ttl > 2*time.Hour {
			t.Errorf("%s: TTL %s (%v), want up to 2 x MaxAge", k, ttl, err)
		}
	}
	// Drift from outside (a key edited by hand, entries trimmed by an older version) that
	// says the queue is full: the counters heal as soon as the stream is empty.
	if err := rdb.Del(ctx, q.keys.stream(0)).Err(); err != nil {
		t.Fatal(err)
	}
	rdb.Set(ctx, q.keys.bytes(0), 1<<40, 0)
	rdb.HSet(ctx, q.keys.userBytes(0), "bob", 1<<40)
	if err := q.Emit(ctx, clientEvent("bob", 2)); err != nil {
		t.Fatalf("emit on an empty stream with drifted counters: %v", err)
	}
	if n := checkAccounting(t, q); n == 0 || n > 1000 {
		t.Fatalf("counted %d bytes for one small event", n)
	}
}

func TestServerEventsUseTheReserveAndAreCountedWhenEvenItIsFull(t *testing.T) {
	t.Parallel()
	rdb := newRedis(t, redistest.Start(t))
	// Room for about 16 presence events, 12 of them client events.
	q := newQueue(t, rdb, Config{URL: "http://127.0.0.1:1/", Shards: 1, MaxBytes: 16 * 300, MaxUserBytes: 1 << 20})
	ctx := context.Background()
	clients := 0
	for ; ; clients++ {
		err := q.Emit(ctx, clientEvent("u"+strconv.Itoa(clients), clients))
		if errors.Is(err, ErrQueueFull) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	online := 0
	for i := 0; q.Stats().DroppedQueueBytes == 1; i++ {
		if i == 100 {
			t.Fatal("presence events never filled the reserve")
		}
		if err := q.Presence().Connected(ctx, "p"+strconv.Itoa(i), "n1", "c"); err != nil {
			t.Fatal(err)
		}
		online = i + 1
	}
	if online < 2 {
		t.Errorf("only %d presence events fit in the reserve", online-1)
	}
	// The presence change stands though its event did not fit.
	if n, err := q.Presence().Online(ctx, "p"+strconv.Itoa(online-1)); err != nil || n != 1 {
		t.Errorf("presence of the user whose event was refused: %d, %v", n, err)
	}
	if err := q.Emit(ctx, Event{Type: RoomJoined, User: "bob", Room: "r", By: ByAPI}); !errors.Is(err, ErrQueueFull) {
		t.Errorf("room.joined into a full queue: %v, want ErrQueueFull", err)
	}
	st := q.Stats()
	if st.DroppedQueueBytes != 3 || st.Queued != int64(clients+online-1) {
		t.Errorf("stats %+v after %d client and %d presence events", st, clients, online)
	}
	if n := checkAccounting(t, q); n > 16*300 {
		t.Errorf("queue holds %d bytes, over its budget", n)
	}
	t.Logf("budget %d: %d client events, then %d presence events in the reserve", 16*300, clients, online-1)
}
