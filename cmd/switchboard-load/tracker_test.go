package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/lxzan/gws"
)

// lyingNode is a fake Switchboard node for one connected user: it accepts every post with
// ids 1-0, 2-0, … and, once the last of them is in, delivers the posts listed in script (by
// their 1-based place in the order they arrived) — in that order, repeats and gaps
// included. It is how the tests plant a loss, a duplicate and a reordering that a real node
// never makes, to check that the tool reports each one.
type lyingNode struct {
	posts  int   // how many posts the run makes
	script []int // the deliveries, as post numbers

	mu     sync.Mutex
	conn   *gws.Conn
	bodies []json.RawMessage // by post number - 1
}

func (n *lyingNode) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/healthz":
	case r.URL.Path == "/ws":
		n.upgrade(w, r)
	case r.Method == http.MethodPut || r.Method == http.MethodDelete: // room members
		w.WriteHeader(http.StatusNoContent)
	case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/messages"):
		n.post(w, r)
	default:
		http.NotFound(w, r)
	}
}

func (n *lyingNode) upgrade(w http.ResponseWriter, r *http.Request) {
	up := gws.NewUpgrader(&gws.BuiltinEventHandler{}, &gws.ServerOption{})
	c, err := up.Upgrade(w, r)
	if err != nil {
		return
	}
	n.mu.Lock()
	n.conn = c
	n.mu.Unlock()
	_ = c.WriteString(`{"type":"welcome","user":"` + r.URL.Query().Get("user") + `","last_id":"0-0"}`)
	go c.ReadLoop()
}

func (n *lyingNode) post(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	n.mu.Lock()
	n.bodies = append(n.bodies, body)
	k := len(n.bodies)
	var deliveries [][]byte
	if k == n.posts {
		for _, p := range n.script {
			deliveries = append(deliveries, fmt.Appendf(nil, `{"type":"message","id":"%d-0","from":"backend","data":%s}`, p, n.bodies[p-1]))
		}
	}
	conn := n.conn
	n.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	fmt.Fprintf(w, `{"id":"%d-0","recipients":1}`, k)
	for _, d := range deliveries {
		_ = conn.WriteMessage(gws.OpcodeText, d)
	}
}

// Five posts; post 4 never arrives, post 3 arrives twice, and post 2 after post 3. Each
// scenario's tracker must count exactly one loss, one duplicate and one reordering, and
// fail the run for them — a tracker that always reports 0 would pass every happy-path test.
func TestPlantedLossDuplicateAndReorderAreEachReported(t *testing.T) {
	for _, tc := range []struct {
		scenario string
		args     []string
		lost     string // how the report names post 4
	}{
		{"dm", []string{"--users", "1"}, "4-0"},
		{"fanout", []string{"--members", "1", "--room", "planted"}, "post 3 reached 0 of 1"},
	} {
		t.Run(tc.scenario, func(t *testing.T) {
			node := &lyingNode{posts: 5, script: []int{1, 3, 2, 3, 5}}
			srv := httptest.NewServer(node)
			t.Cleanup(func() {
				node.mu.Lock()
				if node.conn != nil {
					node.conn.NetConn().Close()
				}
				node.mu.Unlock()
				srv.Close()
			})
			args := append([]string{tc.scenario, "--url", srv.URL, "--count", "5", "--publishers", "1",
				"--grace", "500ms", "--user-prefix", "planted"}, tc.args...)
			code, res := runTool(t, args...)

			d := res.Delivery
			if d == nil {
				t.Fatalf("exit %d, no delivery report; failures %v", code, res.Failures)
			}
			if d.Expected != 5 || d.Delivered != 4 || d.Lost != 1 || d.Duplicated != 1 || d.OutOfOrder != 1 || d.Unexpected != 0 {
				t.Errorf("delivery: %+v; want 5 expected, 4 delivered, 1 lost, 1 duplicated, 1 out of order", d)
			}
			if code != exitFail || res.Passed {
				t.Errorf("exit %d, passed %v: a run with a loss, a duplicate and a reordering must fail", code, res.Passed)
			}
			if len(d.LostSample) != 1 || !strings.Contains(d.LostSample[0], tc.lost) {
				t.Errorf("lost sample %q, want the one lost post (%s)", d.LostSample, tc.lost)
			}
			want := []string{"1 deliveries lost", "1 deliveries duplicated", "1 deliveries out of order"}
			for _, w := range want {
				if !strings.Contains(strings.Join(res.Failures, "\n"), w) {
					t.Errorf("failures %q do not say %q", res.Failures, w)
				}
			}
		})
	}
}
