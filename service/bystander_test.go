package service_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/internal/wsclient"
)

// bystanderProbe is a user nobody attacks: while a test misbehaves against a node, it keeps
// posting itself direct messages through the HTTP API of one node and reading them on a
// WebSocket to another (or the same), and measures how long each took. Stop fails the test
// if any was lost, arrived out of order or the connection ended: one misbehaving client must
// never hurt another.
type bystanderProbe struct {
	t    *testing.T
	user string
	stop chan struct{}
	done chan struct{}
	lat  []time.Duration // written by the probe goroutine, read after done
	// Delivered counts the DMs that went through so far; a test may wait on it.
	Delivered atomic.Int64
	failed    string // why the probe stopped early, if it did
	// refresh, when set, mints the token the probe answers an expiring frame with, so that
	// a token connection outlives its first token.
	refresh func() string
}

// startBystander connects user to wsNode and starts posting to it through postNode every
// 10 ms. auth is the header key and value for /v1, when the node has an API key; extra are
// query parameters for the WebSocket (a token in token mode).
func startBystander(t *testing.T, postNode, wsNode *node, user string, auth []string, extra ...string) *bystanderProbe {
	t.Helper()
	return startRefreshingBystander(t, postNode, wsNode, user, auth, nil, extra...)
}

// startRefreshingBystander is startBystander for a token connection that answers every
// expiring frame with a refresh to a token from refresh (nil: it does not expect one).
func startRefreshingBystander(t *testing.T, postNode, wsNode *node, user string, auth []string, refresh func() string, extra ...string) *bystanderProbe {
	t.Helper()
	var conn *wsclient.Conn
	if len(extra) > 0 {
		q := url.Values{}
		for i := 0; i+1 < len(extra); i += 2 {
			q.Set(extra[i], extra[i+1])
		}
		c, err := wsclient.Dial(wsNode.wsURL(q.Encode()), wsclient.Options{})
		if err != nil {
			t.Fatalf("bystander %s: dial: %v", user, err)
		}
		t.Cleanup(c.Close)
		if w := next(t, c, "welcome"); w.User != user {
			t.Fatalf("bystander welcome for %q, want %q", w.User, user)
		}
		conn = c
	} else {
		conn, _ = connect(t, wsNode, user)
	}
	p := &bystanderProbe{t: t, user: user, stop: make(chan struct{}), done: make(chan struct{}), refresh: refresh}
	go p.run(postNode.base+"/v1/users/"+user+"/messages", conn, auth)
	t.Cleanup(func() {
		select {
		case <-p.stop:
		default:
			close(p.stop)
		}
		<-p.done
	})
	return p
}

func (p *bystanderProbe) run(postURL string, conn *wsclient.Conn, auth []string) {
	defer close(p.done)
	client := &http.Client{Timeout: 10 * time.Second}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for seq := 0; ; seq++ {
		select {
		case <-p.stop:
			return
		case <-tick.C:
		}
		req, _ := http.NewRequest("POST", postURL, strings.NewReader(fmt.Sprintf(`{"probe":%d}`, seq)))
		req.Header.Set("Content-Type", "application/json")
		if len(auth) == 2 {
			req.Header.Set(auth[0], auth[1])
		}
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			p.failed = fmt.Sprintf("post %d: %v", seq, err)
			return
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var a struct{ ID string }
		if resp.StatusCode != http.StatusAccepted || json.Unmarshal(body, &a) != nil || a.ID == "" {
			p.failed = fmt.Sprintf("post %d: %d %s", seq, resp.StatusCode, body)
			return
		}
		f, err := p.next(conn)
		if err != nil {
			code, _ := conn.CloseCode()
			p.failed = fmt.Sprintf("waiting for message %s: %v (close code %d)", a.ID, err, code)
			return
		}
		if f.Type != "message" || f.ID != a.ID {
			p.failed = fmt.Sprintf("want message %s, got %s", a.ID, f.Raw)
			return
		}
		p.lat = append(p.lat, time.Since(start))
		p.Delivered.Add(1)
	}
}

// next reads the next frame that is not about the probe's token: it answers an expiring
// frame with a refresh and skips that refresh's ack.
func (p *bystanderProbe) next(conn *wsclient.Conn) (wsclient.Frame, error) {
	for {
		f, err := conn.NextWithin(10 * time.Second)
		switch {
		case err != nil || p.refresh == nil:
			return f, err
		case f.Type == "expiring":
			if err := conn.Send(map[string]string{"type": "refresh", "token": p.refresh(), "ref": "probe-refresh"}); err != nil {
				return f, err
			}
		case f.Type == "ack" && f.Ref == "probe-refresh":
		default:
			return f, nil
		}
	}
}

// Stop ends the probe, fails the test if it saw a loss, and returns the 99th percentile of
// the post-to-delivery latency, which it also logs.
func (p *bystanderProbe) Stop() time.Duration {
	p.t.Helper()
	// A test may end before the first probe went through (a refusal is quick): the probe
	// gets up to 10 s to show one delivery, or to fail, before it is stopped.
	for deadline := time.Now().Add(10 * time.Second); p.Delivered.Load() == 0 && time.Now().Before(deadline); {
		select {
		case <-p.done:
			deadline = time.Time{}
		case <-time.After(5 * time.Millisecond):
		}
	}
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	<-p.done
	if p.failed != "" {
		p.t.Fatalf("bystander %s: %s", p.user, p.failed)
	}
	if len(p.lat) == 0 {
		p.t.Fatalf("bystander %s: no message went through", p.user)
	}
	lat := slices.Clone(p.lat)
	slices.Sort(lat)
	q := func(f float64) time.Duration { return lat[min(len(lat)-1, int(f*float64(len(lat))))] }
	p.t.Logf("bystander %s: %d DMs delivered, p50 %v, p99 %v, max %v", p.user, len(lat), q(0.50), q(0.99), lat[len(lat)-1])
	return q(0.99)
}
