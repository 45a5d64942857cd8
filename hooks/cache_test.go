package hooks

import (
	"fmt"
	"testing"
	"time"
)

// checkList fails the test unless the cache's list and map hold the same answers, at most
// its bound, and returns how many.
func checkList(t *testing.T, c *cache) int {
	t.Helper()
	n := 0
	for e := c.root.next; e != &c.root; e = e.next {
		if c.entries[e.key] != e || e.next.prev != e {
			t.Fatalf("the list and the map disagree at %+v", e.key)
		}
		n++
	}
	if n != len(c.entries) || n > c.max {
		t.Fatalf("%d answers listed, %d mapped, bound %d", n, len(c.entries), c.max)
	}
	return n
}

func TestCacheExpiresAnswers(t *testing.T) {
	t.Parallel()
	c := newCache(10)
	now := time.Unix(1000, 0)
	c.put(joinLobby, true, now.Add(time.Second), now)
	if allow, ok := c.get(joinLobby, now.Add(time.Second-1)); !allow || !ok {
		t.Fatalf("before expiry: %v, %v", allow, ok)
	}
	if _, ok := c.get(joinLobby, now.Add(time.Second)); ok {
		t.Fatal("at expiry the answer is still there")
	}
	if n := checkList(t, c); n != 0 {
		t.Errorf("an expired answer found stays held: %d", n)
	}
}

func TestCacheReplacesAnAnswerInPlace(t *testing.T) {
	t.Parallel()
	c := newCache(2)
	now := time.Unix(1000, 0)
	other := AuthorizeRequest{Action: ActionSend, User: "alice", To: "bob"}
	c.put(other, true, now.Add(time.Hour), now)
	for i := range 100 {
		c.put(joinLobby, i%2 == 0, now.Add(time.Hour), now)
	}
	if allow, ok := c.get(joinLobby, now); allow || !ok {
		t.Errorf("the last answer: %v, %v; want false, true", allow, ok)
	}
	if allow, ok := c.get(other, now); !allow || !ok {
		t.Errorf("the other answer: %v, %v; want it kept", allow, ok)
	}
	if n := checkList(t, c); n != 2 {
		t.Errorf("%d answers, want 2", n)
	}
}

func TestCacheEvictsTheOldestAndDropsExpiredFirst(t *testing.T) {
	t.Parallel()
	c := newCache(3)
	now := time.Unix(1000, 0)
	req := func(i int) AuthorizeRequest {
		return AuthorizeRequest{Action: ActionJoin, User: "u", Room: fmt.Sprint("r", i)}
	}
	c.put(req(0), true, now.Add(time.Second), now) // expires first
	c.put(req(1), true, now.Add(time.Hour), now)
	c.put(req(2), true, now.Add(time.Hour), now)
	later := now.Add(2 * time.Second)
	c.put(req(1), false, later.Add(time.Hour), later) // refreshed: now the newest
	c.put(req(3), true, later.Add(time.Hour), later)  // full: 0 has expired and goes
	c.put(req(4), true, later.Add(time.Hour), later)  // full: the oldest, 2, goes
	for i, want := range []bool{false, true, false, true, true} {
		if _, ok := c.get(req(i), later); ok != want {
			t.Errorf("answer %d held: %v, want %v", i, ok, want)
		}
	}
	if n := checkList(t, c); n != 3 {
		t.Errorf("%d answers held, want 3", n)
	}
}

func TestCacheStaysWithinItsBound(t *testing.T) {
	t.Parallel()
	const bound = 1000
	c := newCache(bound)
	now := time.Unix(1000, 0)
	for i := range 5 * bound {
		c.put(AuthorizeRequest{Action: ActionJoin, User: "u", Room: fmt.Sprint("r", i)}, true, now.Add(time.Hour), now)
		if len(c.entries) > bound {
			t.Fatalf("after %d answers: %d held", i+1, len(c.entries))
		}
	}
	checkList(t, c)
	for i := 4 * bound; i < 5*bound; i++ {
		if _, ok := c.get(AuthorizeRequest{Action: ActionJoin, User: "u", Room: fmt.Sprint("r", i)}, now); !ok {
			t.Fatalf("answer %d, one of the newest, is not held", i)
		}
	}
}
