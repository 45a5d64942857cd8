package service_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/internal/testutil"
)

func TestDrainTurnsUnreadyThenCloses1012AndFinishesInFlightRequests(t *testing.T) {
	srv, _ := startRedis(t)
	const drainDelay = 2 * time.Second
	a := startNode(t, onRedis(srv), "a", func(o *nodeOptions) { o.service.DrainDelay = drainDelay })
	bob, _ := connect(t, a, "bob")

	// A request whose body is still on its way when the drain starts.
	body, feed := io.Pipe()
	req, _ := http.NewRequest("POST", a.base+"/v1/users/bob/messages", body)
	req.Header.Set("Content-Type", "application/json")
	answer := make(chan *http.Response, 1)
	go func() {
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Errorf("in-flight POST: %v", err)
			close(answer)
			return
		}
		answer <- res
	}()
	_, _ = feed.Write([]byte(`{"in":`))

	stopped := make(chan struct{})
	// The delay starts once Stop is called, so the socket must stay open until at least
	// this deadline: watch it over the whole window, not once.
	delayOver := time.Now().Add(drainDelay)
	go func() { a.Stop(); close(stopped) }()
	testutil.WaitFor(t, 5*time.Second, func() bool {
		return do(t, "GET", a.base+"/readyz", "", nil).status == http.StatusServiceUnavailable
	}, "/readyz to answer 503 while the node drains")
	select {
	case <-bob.Done():
		code, err := bob.CloseCode()
		t.Fatalf("the WebSocket closed during the drain delay, %v before its end: code %d, %v", time.Until(delayOver), code, err)
	case <-time.After(time.Until(delayOver)):
	}
	select {
	case <-bob.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the WebSocket was not closed")
	}
	if code, _ := bob.CloseCode(); code != 1012 {
		t.Fatalf("close code %d, want 1012", code)
	}
	_, _ = feed.Write([]byte(`"flight"}`))
	_ = feed.Close()
	res := <-answer
	if res == nil || res.StatusCode != http.StatusAccepted {
		t.Fatalf("the in-flight request was not finished: %v", res)
	}
	res.Body.Close()
	<-stopped
	if n := srv.Client(t).Keys(context.Background(), "*stream:bob").Val(); len(n) != 1 {
		t.Fatalf("the in-flight message was not stored: %v", n)
	}
}

func TestHalfOpenSocketsAreDroppedByTheReadDeadline(t *testing.T) {
	srv, _ := startRedis(t)
	a := startNode(t, onRedis(srv), "a", func(o *nodeOptions) {
		o.service.PingInterval, o.service.ReadTimeout = 100*time.Millisecond, 500*time.Millisecond
	})
	// A client that completes the handshake and then goes silent: it never answers pings.
	conn, err := net.Dial("tcp", strings.TrimPrefix(a.base, "http://"))
	must(t, err)
	defer conn.Close()
	key := make([]byte, 16)
	_, _ = rand.Read(key)
	fmt.Fprintf(conn, "GET /ws?user=ghost HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: %s\r\n\r\n", base64.StdEncoding.EncodeToString(key))
	status, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || !strings.Contains(status, "101") {
		t.Fatalf("handshake: %q %v", status, err)
	}
	testutil.WaitFor(t, 5*time.Second, func() bool { return a.hub.Stats().Users == 1 }, "the ghost to be subscribed")
	start := time.Now()
	testutil.WaitFor(t, 10*time.Second, func() bool { return a.hub.Stats().Users == 0 }, "the silent connection to be dropped")
	t.Logf("dropped %s after subscribing", time.Since(start).Round(time.Millisecond))
	// A live client that answers pings stays.
	live, _ := connect(t, a, "alive")
	testutil.StaysOpen(t, live.Done(), 1500*time.Millisecond, "a client that answers pings")
}

func TestAHugeRoomFanOutDoesNotStallOtherTraffic(t *testing.T) {
	srv, _ := startRedis(t)
	// The per-member path is what could stall other traffic: a big room is one call.
	a := startNode(t, onRedis(srv), "a", bigThreshold(-1))
	const members = 10000
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < members; i += 8 {
				if _, err := a.hub.Join(context.Background(), "huge", fmt.Sprintf("m%d", i)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	bob, _ := connect(t, a, "bob")
	posted := make(chan int, 1)
	var fanOuts time.Duration // the 5 posts' time, written before posted is sent on
	go func() {
		n, start := 0, time.Now()
		defer func() { fanOuts = time.Since(start); posted <- n }()
		for range 5 {
			r, err := http.Post(a.base+"/v1/rooms/huge/messages", "application/json", strings.NewReader(`"to everyone"`))
			if err == nil && r.StatusCode == http.StatusAccepted {
				n++
			} else if err != nil {
				t.Logf("room post: %v", err)
			} else {
				b, _ := io.ReadAll(r.Body)
				t.Logf("room post: %d %s", r.StatusCode, b)
			}
			if r != nil {
				r.Body.Close()
			}
		}
	}()
	var lat []time.Duration
	for i := 0; ; i++ {
		start := time.Now()
		id := sendDM(t, a, "bob", fmt.Sprint(i))
		if m := next(t, bob, "message"); m.ID != id {
			t.Fatalf("bob got %s", m.Raw)
		}
		lat = append(lat, time.Since(start))
		select {
		case n := <-posted:
			if n != 5 {
				t.Fatalf("%d of 5 room posts accepted", n)
			}
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			p50, p99 := lat[len(lat)/2], lat[len(lat)*99/100]
			perFanOut := fanOuts / 5
			t.Logf("%d DMs during 5 fan-outs to %d members (%s each): p50 %s, p99 %s, max %s", len(lat), members, perFanOut, p50, p99, lat[len(lat)-1])
			// A DM queued behind a fan-out would wait for the rest of it: half a fan-out
			// on average. The bound is relative, so a busy machine slows both sides alike.
			if p50 > perFanOut/4 {
				t.Fatalf("DM p50 %s while each fan-out took %s: DMs wait for fan-outs", p50, perFanOut)
			}
			return
		default:
		}
	}
}
