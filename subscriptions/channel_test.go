package subscriptions

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard-dev/switchboard/internal/redistest"
	"github.com/switchboard-dev/switchboard/internal/testutil"
)

func TestChannelStateTransitions(t *testing.T) {
	// Every transition a channel may take; any other event in a state must be refused.
	allowed := map[chanState]map[chanEvent]chanState{
		chanIdle:          {evSubscribe: chanSubscribing, evConnLost: chanIdle},
		chanSubscribing:   {evConfirmed: chanLive, evConnLost: chanIdle},
		chanLive:          {evUnsubscribe: chanUnsubscribing, evConnLost: chanLost},
		chanUnsubscribing: {evConfirmed: chanIdle, evConnLost: chanIdle},
		chanLost:          {evSubscribe: chanRecovering, evConnLost: chanLost},
		chanRecovering:    {evConfirmed: chanLive, evConnLost: chanLost},
	}
	events := map[chanEvent]string{evSubscribe: "subscribe", evUnsubscribe: "unsubscribe", evConfirmed: "confirmed", evConnLost: "connLost"}
	for from := chanIdle; from <= chanRecovering; from++ {
		for e, name := range events {
			want, ok := allowed[from][e]
			if !ok {
				want = from
			}
			t.Run(fmt.Sprintf("%s on %s", name, from), func(t *testing.T) {
				c := &channel{state: from, readyCh: make(chan struct{})}
				if from == chanLive {
					close(c.readyCh)
				}
				if got := c.apply(e); got != ok {
					t.Fatalf("apply reported %v, want %v", got, ok)
				}
				if c.state != want {
					t.Fatalf("state %s, want %s", c.state, want)
				}
				select {
				case <-c.readyCh:
					if c.state != chanLive {
						t.Fatalf("readyCh closed in state %s: subscribers would not wait for Redis", c.state)
					}
				default:
					if c.state == chanLive {
						t.Fatal("readyCh open while live: subscribers would wait forever")
					}
				}
			})
		}
	}
}

// TestALinkWalksAChannelThroughItsStates drives one channel through a link's flusher plan
// and Redis's confirmations, without Redis: subscribe, a rebuilt connection and its
// catch-up, then the last subscriber leaving.
func TestALinkWalksAChannelThroughItsStates(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	h, err := New(rdb, Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	l := h.linkFor("bob")
	name := h.keys.userChannel("bob")
	confirm := func(ps *redis.PubSub, kind, channel string) confirmation {
		return l.confirm(ps, &redis.Subscription{Kind: kind, Channel: channel})
	}
	expect := func(step string, want chanState) {
		t.Helper()
		l.mu.Lock()
		defer l.mu.Unlock()
		if c := l.channels[name]; c == nil || c.state != want {
			t.Fatalf("%s: channel %v, want state %s", step, c, want)
		}
	}
	flush := func(step string, wantSubs, wantUnsubs []string) {
		t.Helper()
		_, subs, unsubs := l.planFlush()
		if !slices.Equal(subs, wantSubs) || !slices.Equal(unsubs, wantUnsubs) {
			t.Fatalf("%s: flush writes SUBSCRIBE %v UNSUBSCRIBE %v, want %v and %v", step, subs, unsubs, wantSubs, wantUnsubs)
		}
	}

	ps := rdb.Subscribe(ctx) // no channel: it never dials
	if !l.adopt(ps) || !confirm(ps, "subscribe", l.sentinel).up {
		t.Fatal("the link did not come up on its sentinel's confirmation")
	}
	s := &Subscription{hub: h, user: "bob", sink: &sink{}}
	ready := h.attach("bob", s)
	expect("attached", chanIdle)
	flush("first flush", []string{name}, nil)
	expect("SUBSCRIBE written", chanSubscribing)
	flush("while a confirmation is due", nil, nil)
	if c := confirm(ps, "subscribe", name); c.rebuild || len(c.catchup) > 0 {
		t.Fatalf("a first subscribe's confirmation asked for %+v", c)
	}
	expect("confirmed", chanLive)
	select {
	case <-ready:
	default:
		t.Fatal("the subscriber still waits after Redis confirmed")
	}

	ps2 := rdb.Subscribe(ctx)
	l.adopt(ps2)
	expect("connection replaced", chanLost)
	if c := confirm(ps, "unsubscribe", name); c.rebuild {
		t.Fatal("a confirmation from the replaced connection was applied")
	}
	confirm(ps2, "subscribe", l.sentinel)
	flush("flush on the new connection", []string{name}, nil)
	expect("resubscribing", chanRecovering)
	if c := confirm(ps2, "subscribe", name); !slices.Equal(c.catchup, []*Subscription{s}) {
		t.Fatalf("recovered channel asked to catch up %v, want its one subscriber", c.catchup)
	}
	expect("recovered", chanLive)

	s.detach()
	flush("last subscriber gone", nil, []string{name})
	expect("UNSUBSCRIBE written", chanUnsubscribing)
	if c := confirm(ps2, "subscribe", name); !c.rebuild {
		t.Fatal("a subscribe confirmation while unsubscribing did not rebuild the connection")
	}
	confirm(ps2, "unsubscribe", name)
	l.mu.Lock()
	defer l.mu.Unlock()
	if c := l.channels[name]; c != nil {
		t.Fatalf("the channel is still tracked in state %s after its unsubscribe", c.state)
	}
}

// callbackSink runs f from its first Deliver, as a service whose delivery path calls back
// into the hub would.
type callbackSink struct {
	sink
	fmu  sync.Mutex
	f    func()
	done chan struct{}
}

func (s *callbackSink) setCallback(f func()) {
	s.fmu.Lock()
	s.f = f
	s.fmu.Unlock()
}

func (s *callbackSink) Deliver(m Message) bool {
	s.fmu.Lock()
	f := s.f
	s.f = nil
	s.fmu.Unlock()
	if f != nil {
		f()
		close(s.done)
	}
	return s.sink.Deliver(m)
}

// TestASinkMayCallBackIntoTheHubFromDeliver proves dispatch holds no hub or link lock while
// it calls a Sink: from inside Deliver, the sink counts the user's connections, subscribes a
// new one and closes another that the same dispatch is about to offer the message to. With
// the lock held, the first two would deadlock the Pub/Sub reader (and a regression shows as
// this test timing out, with the reader's stack in the dump).
func TestASinkMayCallBackIntoTheHubFromDeliver(t *testing.T) {
	srv := redistest.Start(t)
	h := startHub(t, srv)
	var (
		seen    int
		added   *Subscription
		addErr  error
		addSink = &sink{}
	)
	first := &callbackSink{done: make(chan struct{})}
	subscribe(t, h, "echo", "", first)
	victimSink := &sink{}
	victim, _ := subscribe(t, h, "echo", "", victimSink)
	first.setCallback(func() {
		seen = h.LocalConnections("echo")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		added, _, addErr = h.Subscribe(ctx, "echo", "", addSink)
		victim.Close() // offered this very message next: it must not get it
	})
	publish(t, h, "echo", "1")
	select {
	case <-first.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the sink's calls into the hub did not return: dispatch holds a lock while calling a sink")
	}
	if addErr != nil {
		t.Fatalf("subscribe from inside Deliver: %v", addErr)
	}
	t.Cleanup(added.Close)
	added.Start()
	if seen != 2 {
		t.Fatalf("LocalConnections from inside Deliver said %d, want 2", seen)
	}
	second := publish(t, h, "echo", "2")
	testutil.WaitFor(t, 5*time.Second, func() bool { return first.count() == 2 && addSink.count() == 1 }, "the second message at both open subscriptions")
	if msgs, _ := addSink.snapshot(); msgs[0].ID != second {
		t.Fatalf("the subscription added from Deliver got %s, want %s", msgs[0].ID, second)
	}
	if n, err := victimSink.snapshot(); len(n) != 0 || err != nil {
		t.Fatalf("the subscription closed from Deliver got %d messages (drop %v) after Close returned", len(n), err)
	}
	if n := h.LocalConnections("echo"); n != 2 {
		t.Fatalf("%d local connections, want 2", n)
	}
}

// TestRunJoinsEveryGoroutineItStarts stops a hub that holds links, subscriptions and a
// control reply, and checks that once Run has returned no goroutine of the hub is left.
func TestRunJoinsEveryGoroutineItStarts(t *testing.T) {
	srv := redistest.Start(t)
	opts, err := redis.ParseURL(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	opts.MaxRetries = -1
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { _ = rdb.Close() })
	h, err := New(rdb, Config{Node: "n1", Prefix: "t", Heartbeat: 200 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ran := make(chan error, 1)
	go func() { ran <- h.Run(ctx) }()
	testutil.WaitFor(t, 10*time.Second, func() bool { return h.Ready() == nil }, "hub ready")
	for _, u := range []string{"a", "b", "c"} {
		s, _, err := h.Subscribe(ctx, u, "", &sink{})
		if err != nil {
			t.Fatal(err)
		}
		s.Start()
	}
	if n, err := h.Disconnect(ctx, "a"); err != nil || n != 1 {
		t.Fatalf("disconnect: %d, %v", n, err)
	}
	cancel()
	select {
	case <-ran:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	// No polling: a goroutine still running now was not joined.
	buf := make([]byte, 1<<20)
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		if strings.Contains(g, "/subscriptions.(*") {
			t.Errorf("a goroutine of the hub outlived Run:\n%s", g)
		}
	}
}
