package subscriptions

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard-dev/switchboard/internal/redistest"
	"github.com/switchboard-dev/switchboard/internal/testutil"
)

// TestOnRedisCluster runs the hub on a real 3-master Redis Cluster with sharded Pub/Sub:
// users whose keys hash to every shard, two hubs as two nodes, rooms spanning shards,
// resume, and a Pub/Sub drop on one shard, with every message counted. One cluster serves
// all subtests; each uses its own key prefix.
func TestOnRedisCluster(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	client := func() redis.UniversalClient {
		return redis.NewClusterClient(&redis.ClusterOptions{
			Addrs: cl.Addrs(), MaxRetries: -1, ContextTimeoutEnabled: true, ReadTimeout: 2 * time.Second,
		})
	}
	hubs := func(t *testing.T, n int) []*Hub {
		var hs []*Hub
		prefix := fmt.Sprintf("c%d", time.Now().UnixNano())
		for i := range n {
			hs = append(hs, startHubOn(t, client(), func(c *Config) { c.Prefix, c.Node = prefix, "n"+strconv.Itoa(i) }))
		}
		return hs
	}
	users := make([]string, 40) // spread over many buckets, and so over all three masters
	for i := range users {
		users[i] = "user" + strconv.Itoa(i)
	}
	masters := map[string]bool{}
	probe := client()
	defer probe.Close()
	for _, u := range users {
		addr, err := masterOf(probe, keys{prefix: "t"}.userStream(u))
		if err != nil {
			t.Fatal(err)
		}
		masters[addr] = true
	}
	if len(masters) != 3 {
		t.Fatalf("test users cover %d masters, want 3", len(masters))
	}

	t.Run("direct messages published on one node reach users of every shard on another", func(t *testing.T) {
		hs := hubs(t, 2)
		sinks := subscribeAll(t, hs[0], users)
		ids := map[string][]StreamID{}
		for round := range 5 {
			for _, u := range users {
				ids[u] = append(ids[u], publish(t, hs[1], u, strconv.Itoa(round)))
			}
		}
		for _, u := range users {
			testutil.WaitFor(t, 10*time.Second, func() bool { return sinks[u].count() >= 5 }, u)
			msgs, _ := sinks[u].snapshot()
			checkInOrder(t, msgs, ids[u])
		}
		links := len(hs[0].allLinks())
		if links < 10 {
			t.Fatalf("%d sharded links for 40 users: want one per bucket in use", links)
		}
	})

	t.Run("resume replays from the user's shard", func(t *testing.T) {
		h := hubs(t, 1)[0]
		var ids []StreamID
		for i := range 10 {
			ids = append(ids, publish(t, h, "user7", strconv.Itoa(i)))
		}
		s := &sink{}
		_, w := subscribe(t, h, "user7", ids[3].String(), s)
		if w.Recovered == nil || !*w.Recovered {
			t.Fatal("not recovered")
		}
		msgs, _ := s.snapshot()
		checkInOrder(t, msgs, ids[4:])
	})

	t.Run("a room whose members live on different shards gets every message in one order", func(t *testing.T) {
		hs := hubs(t, 2)
		sinks := map[string]*sink{}
		for i, u := range users {
			if _, err := hs[i%2].Join(context.Background(), "lobby", u); err != nil {
				t.Fatal(err)
			}
			sinks[u] = &sink{}
			subscribe(t, hs[i%2], u, "", sinks[u])
		}
		members, err := hs[0].Members(context.Background(), "lobby")
		if err != nil || len(members) != len(users) {
			t.Fatalf("members %v %v", members, err)
		}
		var wg sync.WaitGroup
		for p := range 2 {
			wg.Go(func() {
				for i := range 10 {
					n, err := hs[p].PublishRoom(context.Background(), "lobby", Envelope{Data: []byte(fmt.Sprintf(`"%d-%d"`, p, i))}, false)
					if err != nil || n != len(users) {
						t.Errorf("fan-out: %d %v", n, err)
					}
				}
			})
		}
		wg.Wait()
		var first []string
		for _, u := range users {
			testutil.WaitFor(t, 10*time.Second, func() bool { return sinks[u].count() >= 20 }, u)
			msgs, _ := sinks[u].snapshot()
			var order []string
			for _, m := range msgs {
				order = append(order, string(m.Payload[len(m.Payload)-6:]))
			}
			if first == nil {
				first = order
			} else if fmt.Sprint(order) != fmt.Sprint(first) {
				t.Fatalf("%s saw %v, another member %v", u, order, first)
			}
		}
		for _, u := range users {
			if _, err := hs[0].Leave(context.Background(), "lobby", u); err != nil {
				t.Fatal(err)
			}
		}
		if members, _ := hs[0].Members(context.Background(), "lobby"); len(members) != 0 {
			t.Fatalf("members after everyone left: %v", members)
		}
	})

	t.Run("a batch to users on every shard keeps each user's order", func(t *testing.T) {
		h := hubs(t, 1)[0]
		sinks := subscribeAll(t, h, users)
		var batch []Direct
		for round := range 5 {
			for _, u := range users {
				batch = append(batch, Direct{User: u, Envelope: Envelope{Data: []byte(strconv.Itoa(round))}})
			}
		}
		ids, errs := h.PublishMany(context.Background(), batch)
		want := map[string][]StreamID{}
		for i, d := range batch {
			if errs[i] != nil {
				t.Fatalf("item %d: %v", i, errs[i])
			}
			want[d.User] = append(want[d.User], ids[i])
		}
		for _, u := range users {
			testutil.WaitFor(t, 10*time.Second, func() bool { return sinks[u].count() >= 5 }, u)
			msgs, _ := sinks[u].snapshot()
			checkInOrder(t, msgs, want[u])
			for r, m := range msgs {
				if !strings.HasSuffix(string(m.Payload), `"data":`+strconv.Itoa(r)+`}`) {
					t.Fatalf("%s message %d: %s", u, r, m.Payload)
				}
			}
		}
	})

	t.Run("a slot moving to another master is followed without loss", func(t *testing.T) {
		hs := hubs(t, 2)
		s := &sink{}
		user := "user3"
		subscribe(t, hs[0], user, "", s)
		var ids []StreamID
		for i := range 10 {
			ids = append(ids, publish(t, hs[1], user, strconv.Itoa(i)))
		}
		key := hs[0].keys.userStream(user)
		src, err := masterOf(probe, key)
		if err != nil {
			t.Fatal(err)
		}
		dst := cl.Addrs()[0]
		if dst == src {
			dst = cl.Addrs()[1]
		}
		slot := int(probe.(*redis.ClusterClient).ClusterKeySlot(context.Background(), key).Val())
		before := hs[0].Stats().PubSubReconnects
		moveSlot(t, cl, slot, src, dst)
		testutil.WaitFor(t, 15*time.Second, func() bool { return hs[0].Stats().PubSubReconnects > before }, "the link of the moved slot to be rebuilt")
		for i := 10; i < 30; i++ {
			var id StreamID
			// The publisher's view of the slots catches up on the first MOVED.
			for attempt := 0; ; attempt++ {
				id, err = hs[1].Publish(context.Background(), user, Envelope{Data: []byte(strconv.Itoa(i))})
				if err == nil {
					break
				}
				if attempt == 50 {
					t.Fatalf("publish after the move: %v", err)
				}
				time.Sleep(50 * time.Millisecond)
			}
			ids = append(ids, id)
		}
		testutil.WaitFor(t, 15*time.Second, func() bool { return s.count() >= len(ids) }, "deliveries after the move")
		msgs, dropped := s.snapshot()
		if dropped != nil {
			t.Fatalf("dropped: %v", dropped)
		}
		checkInOrder(t, msgs, ids)
		if got, _ := masterOf(probe, key); got != dst {
			t.Fatalf("slot is on %s, want %s", got, dst)
		}
	})

	t.Run("a Pub/Sub drop on one shard loses nothing", func(t *testing.T) {
		hs := hubs(t, 2)
		sinks := subscribeAll(t, hs[0], users)
		ids := map[string][]StreamID{}
		for round := range 20 {
			if round == 10 {
				cl.Node(1).KillPubSubClients(t)
			}
			for _, u := range users {
				ids[u] = append(ids[u], publish(t, hs[1], u, strconv.Itoa(round)))
			}
		}
		for _, u := range users {
			testutil.WaitFor(t, 15*time.Second, func() bool { return sinks[u].count() >= 20 }, u)
			msgs, dropped := sinks[u].snapshot()
			if dropped != nil {
				t.Fatalf("%s dropped: %v", u, dropped)
			}
			checkInOrder(t, msgs, ids[u])
		}
		t.Logf("reconnects %d, caught up %d", hs[0].Stats().PubSubReconnects, hs[0].Stats().CaughtUp)
		if hs[0].Stats().PubSubReconnects == 0 {
			t.Fatal("killing one shard's Pub/Sub clients rebuilt no link")
		}
	})
}

// subscribeAll subscribes every user on h, each with a sink of its own.
func subscribeAll(t *testing.T, h *Hub, users []string) map[string]*sink {
	sinks := map[string]*sink{}
	for _, u := range users {
		sinks[u] = &sink{}
		subscribe(t, h, u, "", sinks[u])
	}
	return sinks
}

// moveSlot migrates slot, with its keys, from the master at src to the master at dst, the
// way redis-cli --cluster reshard does.
func moveSlot(t *testing.T, cl *redistest.Cluster, slot int, src, dst string) {
	t.Helper()
	ctx := context.Background()
	node := func(addr string) *redis.Client {
		for i := range 3 {
			if cl.Node(i).Addr() == addr {
				return cl.Node(i).Client(t)
			}
		}
		t.Fatalf("no node %s", addr)
		return nil
	}
	s, d := node(src), node(dst)
	srcID, dstID := s.ClusterMyID(ctx).Val(), d.ClusterMyID(ctx).Val()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(d.Do(ctx, "CLUSTER", "SETSLOT", slot, "IMPORTING", srcID).Err())
	must(s.Do(ctx, "CLUSTER", "SETSLOT", slot, "MIGRATING", dstID).Err())
	host, port, _ := strings.Cut(dst, ":")
	for {
		ks, err := s.ClusterGetKeysInSlot(ctx, slot, 100).Result()
		must(err)
		if len(ks) == 0 {
			break
		}
		args := []any{"MIGRATE", host, port, "", 0, 5000, "KEYS"}
		for _, k := range ks {
			args = append(args, k)
		}
		must(s.Do(ctx, args...).Err())
	}
	for i := range 3 {
		must(cl.Node(i).Client(t).Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", dstID).Err())
	}
}

// masterOf returns the address of the master that owns key's slot.
func masterOf(c redis.UniversalClient, key string) (string, error) {
	cc := c.(*redis.ClusterClient)
	slot, err := cc.ClusterKeySlot(context.Background(), key).Result()
	if err != nil {
		return "", err
	}
	slots, err := cc.ClusterSlots(context.Background()).Result()
	if err != nil {
		return "", err
	}
	for _, s := range slots {
		if int64(s.Start) <= slot && slot <= int64(s.End) {
			return s.Nodes[0].Addr, nil
		}
	}
	return "", fmt.Errorf("no master for slot %d", slot)
}
