package service_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/switchboard-dev/switchboard/internal/wsclient"
)

// post sends a JSON POST with an Idempotency-Key (none when key is "").
func post(t *testing.T, u, body, key string) response {
	t.Helper()
	if key == "" {
		return do(t, "POST", u, "application/json", strings.NewReader(body))
	}
	return do(t, "POST", u, "application/json", strings.NewReader(body), "Idempotency-Key", key)
}

// sameAnswer fails unless a retry answered what the first call did, marked as a replay.
func sameAnswer(t *testing.T, first, retry response) {
	t.Helper()
	if retry.status != first.status || string(retry.body) != string(first.body) {
		t.Fatalf("retry answered %d %s, first %d %s", retry.status, retry.body, first.status, first.body)
	}
	if retry.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("a replayed answer lacks Idempotent-Replayed: %v", retry.header)
	}
}

// framesUntil reads c's messages until one with data marker and returns the data of those
// before it: what the connection got, each delivery counted.
func framesUntil(t *testing.T, c *wsclient.Conn, marker string) []string {
	t.Helper()
	var got []string
	for {
		m := next(t, c, "message")
		if string(m.Data) == marker {
			return got
		}
		got = append(got, string(m.Data))
	}
}

func testIdempotencyKeysDeliverEachSendOnce(t *testing.T, be backend) {
	a := startNode(t, be, "a")
	b := startNode(t, be, "b")
	bob, _ := connect(t, b, "bob")
	carol, _ := connect(t, a, "carol")
	putMember(t, a, "lobby", "bob")
	putMember(t, a, "lobby", "carol")
	dm := func(n *node) string { return n.base + "/v1/users/bob/messages?from=ops" }
	room := func(n *node) string { return n.base + "/v1/rooms/lobby/messages" }

	first := post(t, dm(a), `{"n":1}`, "dm-1")
	if first.status != http.StatusAccepted || first.header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("first send: %d %s", first.status, first.body)
	}
	sameAnswer(t, first, post(t, dm(b), `{"n":1}`, "dm-1"))
	if r := post(t, dm(a), `{"n":2}`, "dm-1"); r.status != http.StatusConflict || r.errorCode(t) != "idempotency_conflict" {
		t.Fatalf("another body under the key: %d %s", r.status, r.body)
	}
	concurrently(t, 8, func(i int) (response, error) {
		return request("POST", dm([]*node{a, b}[i%2]), "application/json", strings.NewReader(`{"n":3}`), "Idempotency-Key", "dm-2")
	}, func(rs []response) {
		for _, r := range rs[1:] {
			if r.status != http.StatusAccepted || string(r.body) != string(rs[0].body) {
				t.Fatalf("concurrent retries answered %d %s and %d %s", rs[0].status, rs[0].body, r.status, r.body)
			}
		}
	})

	rfirst := post(t, room(b), `"hello"`, "room-1")
	if rfirst.status != http.StatusAccepted || !strings.Contains(string(rfirst.body), `"recipients":2`) {
		t.Fatalf("room send: %d %s", rfirst.status, rfirst.body)
	}
	sameAnswer(t, rfirst, post(t, room(a), `"hello"`, "room-1"))
	if r := post(t, room(a), `"bye"`, "room-1"); r.status != http.StatusConflict || r.errorCode(t) != "idempotency_conflict" {
		t.Fatalf("another room body under the key: %d %s", r.status, r.body)
	}
	concurrently(t, 6, func(i int) (response, error) {
		return request("POST", room([]*node{a, b}[i%2]), "application/json", strings.NewReader(`"again"`), "Idempotency-Key", "room-2")
	}, func(rs []response) {
		var ok []response
		for _, r := range rs {
			switch {
			case r.status == http.StatusAccepted:
				ok = append(ok, r)
			case r.status == http.StatusConflict && strings.Contains(string(r.body), "idempotency_in_progress") && r.header.Get("Retry-After") != "":
			default:
				t.Fatalf("a concurrent room retry answered %d %s", r.status, r.body)
			}
		}
		if len(ok) == 0 || string(ok[len(ok)-1].body) != string(ok[0].body) {
			t.Fatalf("concurrent room retries: %v", rs)
		}
	})

	batch := `{"messages":[{"user":"bob","data":"b1"},{"room":"lobby","data":"b2"},{"user":"carol","data":"b3"}]}`
	bfirst := post(t, a.base+"/v1/messages", batch, "batch-1")
	if bfirst.status != http.StatusAccepted || strings.Contains(string(bfirst.body), "error") {
		t.Fatalf("batch: %d %s", bfirst.status, bfirst.body)
	}
	sameAnswer(t, bfirst, post(t, b.base+"/v1/messages", batch, "batch-1"))
	other := strings.Replace(batch, "b3", "b4", 1)
	if r := post(t, a.base+"/v1/messages", other, "batch-1"); r.status != http.StatusConflict || r.errorCode(t) != "idempotency_conflict" {
		t.Fatalf("another batch under the key: %d %s", r.status, r.body)
	}

	// What each connection got, each delivery counted, up to a marker sent last.
	post(t, dm(a), `"end"`, "")
	post(t, a.base+"/v1/users/carol/messages", `"end"`, "")
	if got := strings.Join(framesUntil(t, bob, `"end"`), " "); got != `{"n":1} {"n":3} "hello" "again" "b1" "b2"` {
		t.Fatalf("bob got %s", got)
	}
	// A batch sends its direct messages first, then its room items.
	if got := strings.Join(framesUntil(t, carol, `"end"`), " "); got != `"hello" "again" "b3" "b2"` {
		t.Fatalf("carol got %s", got)
	}
	checkIdempotencyTTL(t, be)
}

// checkIdempotencyTTL checks that a direct message's record is kept at least 24 hours: it
// is a field of its period's hash (one a day), which expires at the end of the third day,
// so two to three days from now.
func checkIdempotencyTTL(t *testing.T, be backend) {
	t.Helper()
	rdb := be.open(t, false)
	defer rdb.Close()
	hashes := recordKeys(t, rdb, "hash")
	if len(hashes) == 0 {
		t.Fatal("no hash of direct messages' records")
	}
	for _, k := range hashes {
		ttl, err := rdb.PTTL(context.Background(), k).Result()
		must(t, err)
		if ttl < 48*time.Hour-time.Minute || ttl > 72*time.Hour {
			t.Fatalf("the records' hash %s expires in %v, want 48–72h", k, ttl)
		}
	}
}

// recordKeys returns the idempotency records' keys of the given type: strings for the room
// sends' and batches' records, hashes for the direct messages'.
func recordKeys(t *testing.T, rdb redis.UniversalClient, typ string) []string {
	t.Helper()
	ctx := context.Background()
	var out []string
	scan := func(ctx context.Context, c *redis.Client) error {
		iter := c.ScanType(ctx, 0, "*:idem*", 100, typ).Iterator()
		for iter.Next(ctx) {
			out = append(out, iter.Val())
		}
		return iter.Err()
	}
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		must(t, cc.ForEachMaster(ctx, scan))
	} else {
		must(t, scan(ctx, rdb.(*redis.Client)))
	}
	return out
}

// concurrently makes n requests at once and checks their answers together.
func concurrently(t *testing.T, n int, req func(i int) (response, error), check func([]response)) {
	t.Helper()
	rs := make([]response, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { rs[i], errs[i] = req(i) })
	}
	wg.Wait()
	for _, err := range errs {
		must(t, err)
	}
	check(rs)
}

func TestIdempotencyKeyRefusals(t *testing.T) {
	be := singleRedis(t)
	a := startNode(t, be, "a")
	bob, _ := connect(t, a, "bob")
	u := a.base + "/v1/users/bob/messages"
	for _, key := range []string{strings.Repeat("k", 256), "has space", "br{ace}", "é", "semi;colon"} {
		for _, path := range []string{u, a.base + "/v1/rooms/lobby/messages", a.base + "/v1/messages"} {
			r := post(t, path, `{"messages":[{"user":"bob","data":1}]}`, key)
			if r.status != http.StatusBadRequest || r.errorCode(t) != "invalid_idempotency_key" {
				t.Fatalf("key %q on %s: %d %s", key, path, r.status, r.body)
			}
		}
	}
	req, _ := http.NewRequest("POST", u, strings.NewReader(`1`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Add("Idempotency-Key", "one")
	req.Header.Add("Idempotency-Key", "two")
	res, err := http.DefaultClient.Do(req)
	must(t, err)
	res.Body.Close()
	if res.StatusCode != http.StatusBadRequest {
		t.Fatalf("two keys: %d", res.StatusCode)
	}
	if r := post(t, u+"?ephemeral=true", `1`, "eph"); r.status != http.StatusBadRequest || r.errorCode(t) != "invalid_idempotency_key" {
		t.Fatalf("a key on an ephemeral send: %d %s", r.status, r.body)
	}
	if r := post(t, u, `1`, strings.Repeat("k", 255)); r.status != http.StatusAccepted {
		t.Fatalf("a 255-character key: %d %s", r.status, r.body)
	}
	// Nothing refused was delivered: the first message bob gets is the accepted one.
	if m := next(t, bob, "message"); string(m.Data) != "1" {
		t.Fatalf("bob got %s", m.Raw)
	}
	post(t, u, `"end"`, "")
	if got := framesUntil(t, bob, `"end"`); len(got) != 0 {
		t.Fatalf("bob got more: %v", got)
	}
}

// --idempotency-ttl sets how long every kind of record is kept: a direct message's, a room
// send's and a batch's.
func TestIdempotencyTTLIsConfigurable(t *testing.T) {
	be := singleRedis(t)
	a := startNode(t, be, "a", func(o *nodeOptions) { o.subscriptions.IdempotencyTTL = time.Hour })
	putMember(t, a, "lobby", "bob")
	for path, body := range map[string]string{
		"/v1/users/bob/messages":   `"one"`,
		"/v1/rooms/lobby/messages": `"two"`,
		"/v1/messages":             `{"messages":[{"user":"bob","data":"three"}]}`,
	} {
		if r := post(t, a.base+path, body, "ttl-"+strings.ReplaceAll(path, "/", "-")); r.status != http.StatusAccepted {
			t.Fatalf("POST %s: %d %s", path, r.status, r.body)
		}
	}
	rdb := be.open(t, false)
	defer rdb.Close()
	ctx := context.Background()
	records := recordKeys(t, rdb, "string")
	if len(records) < 2 {
		t.Fatalf("records %q, want the room send's and the batch's", records)
	}
	for _, k := range records {
		ttl, err := rdb.PTTL(ctx, k).Result()
		must(t, err)
		if ttl < 59*time.Minute || ttl > time.Hour {
			t.Fatalf("record %s is kept %v, want an hour", k, ttl)
		}
	}
	// The direct messages' records: fields of an hour's hash, which expires at the end of
	// the third hour, so two to three hours from now.
	hashes := recordKeys(t, rdb, "hash")
	if len(hashes) == 0 {
		t.Fatal("no hash of direct messages' records")
	}
	for _, k := range hashes {
		ttl, err := rdb.PTTL(ctx, k).Result()
		must(t, err)
		if ttl < 2*time.Hour-time.Minute || ttl > 3*time.Hour {
			t.Fatalf("the records' hash %s expires in %v, want 2–3h", k, ttl)
		}
	}
}
