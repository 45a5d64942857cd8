package subscriptions

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard-dev/switchboard/internal/redistest"
	"github.com/switchboard-dev/switchboard/internal/testutil"
)

// redisPeriod is the record period (see idempotent.lua) Redis's clock is in now.
func redisPeriod(t *testing.T, rdb *redis.Client, ttl time.Duration) int64 {
	t.Helper()
	now, err := rdb.Time(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	return now.UnixMilli() / ttl.Milliseconds()
}

// A direct message's record lives in its period's hash: a retry in the next period still
// finds it (in the previous period's hash), the key reused with another request is refused
// there too, and a record is dropped two periods on, so that the key delivers anew.
func TestIdempotencyRecordsLiveOneToTwoPeriods(t *testing.T) {
	srv := redistest.Start(t)
	const ttl = time.Second // each step below takes milliseconds
	h := startHub(t, srv, func(c *Config) { c.IdempotencyTTL = ttl })
	rdb := srv.Client(t)
	ctx := context.Background()
	s := &sink{}
	subscribe(t, h, "bob", "", s)
	idem := Idempotency{Key: "k1", Fingerprint: "fp1"}
	send := func(fp string) (Sent, error) {
		return h.PublishIdempotent(ctx, "bob", Envelope{Data: []byte(`1`)}, Idempotency{Key: idem.Key, Fingerprint: fp})
	}

	first, err := send(idem.Fingerprint)
	if err != nil || first.Replayed {
		t.Fatalf("first send: %+v %v", first, err)
	}
	p := redisPeriod(t, rdb, ttl)
	hash := h.keys.idemRecords(h.groupKey("bob")) + ":" + strconv.FormatInt(ttl.Milliseconds(), 10) + ":"
	record := func(period int64) string {
		v, err := rdb.HGet(ctx, hash+strconv.FormatInt(period, 10), dedupeToken("dm", "bob", "u", idem.Key)).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			t.Fatal(err)
		}
		return v
	}
	if got, want := record(p), "fp1 "+first.ID.String(); got != want {
		// The send and the read may straddle a period's end.
		if got = record(p - 1); got != want {
			t.Fatalf("record %q, want %q in period %d or the one before", got, want, p)
		}
		p--
	}
	pttl, err := rdb.PTTL(ctx, hash+strconv.FormatInt(p, 10)).Result()
	if err != nil || pttl <= 0 || pttl > 3*ttl {
		t.Fatalf("the period's hash expires in %v (%v), want within 3 TTLs", pttl, err)
	}

	// The next period: the record is found in the previous period's hash.
	testutil.WaitFor(t, 5*time.Second, func() bool { return redisPeriod(t, rdb, ttl) == p+1 }, "the next period")
	again, err := send(idem.Fingerprint)
	if err != nil || !again.Replayed || again.ID != first.ID {
		t.Fatalf("a retry in the next period: %+v %v, want a replay of %s", again, err, first.ID)
	}
	if _, err := send("another"); !errors.Is(err, ErrIdempotencyConflict) {
		t.Fatalf("another request under the key in the next period: %v", err)
	}

	// Two periods on, the first write of the period unlinks the record's hash (or it
	// expires): the key is free again.
	testutil.WaitFor(t, 5*time.Second, func() bool { return redisPeriod(t, rdb, ttl) >= p+2 }, "two periods on")
	other, err := h.PublishIdempotent(ctx, "bob", Envelope{Data: []byte(`2`)}, Idempotency{Key: "k2", Fingerprint: "fp2"})
	if err != nil || other.Replayed {
		t.Fatalf("another key: %+v %v", other, err)
	}
	testutil.WaitFor(t, 5*time.Second, func() bool {
		n, err := rdb.Exists(ctx, hash+strconv.FormatInt(p, 10)).Result()
		return err == nil && n == 0
	}, "the record's hash gone")
	fresh, err := send("another")
	if err != nil || fresh.Replayed || !first.ID.Less(fresh.ID) {
		t.Fatalf("the key after its record is gone: %+v %v", fresh, err)
	}
	// Stored anew, it carries the same dedupe token as the first: a connection that got
	// the first takes it for a repeat (dedupe.go), so bob's got two.
	if _, err := h.Publish(ctx, "bob", Envelope{Data: []byte(`"end"`)}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 5*time.Second, func() bool { return s.count() >= 3 }, "the marker")
	if got, _ := s.snapshot(); len(got) != 3 {
		t.Fatalf("bob got %d messages, want 3", len(got))
	}
}

// Sends that share a script call share its HSET: a send and its retry in one call deliver
// once, and every send of a batch has a record of its own.
func TestIdempotentBatchRecordsEachItem(t *testing.T) {
	srv := redistest.Start(t)
	h := startHub(t, srv)
	s := &sink{}
	subscribe(t, h, "bob", "", s)
	ctx := context.Background()
	msgs := []Direct{{User: "bob", Envelope: Envelope{Data: []byte(`1`)}}, {User: "bob", Envelope: Envelope{Data: []byte(`2`)}}}
	idem := Idempotency{Key: "b", Fingerprint: "fp"}
	first, errs := h.PublishManyIdempotent(ctx, msgs, idem)
	if errs[0] != nil || errs[1] != nil || first[0].Replayed || first[1].Replayed || first[0].ID == first[1].ID {
		t.Fatalf("first batch: %+v %v", first, errs)
	}
	again, errs := h.PublishManyIdempotent(ctx, msgs, idem)
	if errs[0] != nil || errs[1] != nil || !again[0].Replayed || !again[1].Replayed || again[0].ID != first[0].ID || again[1].ID != first[1].ID {
		t.Fatalf("retried batch: %+v %v, first %+v", again, errs, first)
	}
	// One call: the single send and its retry queue together in the same pipeline.
	d1 := delivery{stream: h.keys.userStream("bob"), channel: h.keys.userChannel("bob"), bucket: h.groupKey("bob"),
		tail: Envelope{Data: []byte(`3`)}.tail()}
	h.dmRecord(&d1, "bob", "u", Idempotency{Key: "one-call", Fingerprint: "fp"})
	d2 := d1
	h.pub.exec(ctx, []*delivery{&d1, &d2})
	if d1.err != nil || d2.err != nil || d1.replayed || !d2.replayed || d1.id != d2.id {
		t.Fatalf("a send and its retry in one call: %+v, %+v", d1, d2)
	}
	testutil.WaitFor(t, 5*time.Second, func() bool { return s.count() == 3 }, "three deliveries")
	if _, err := h.Publish(ctx, "bob", Envelope{Data: []byte(`"end"`)}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 5*time.Second, func() bool { return s.count() >= 4 }, "the marker")
	if got, _ := s.snapshot(); len(got) != 4 {
		t.Fatalf("bob got %d messages, want 4", len(got))
	}
}
