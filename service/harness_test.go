package service_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard-dev/switchboard/events"
	"github.com/switchboard-dev/switchboard/internal/redistest"
	"github.com/switchboard-dev/switchboard/internal/testutil"
	"github.com/switchboard-dev/switchboard/internal/wsclient"
	"github.com/switchboard-dev/switchboard/service"
	"github.com/switchboard-dev/switchboard/subscriptions"
	"github.com/switchboard-dev/switchboard/tokens"
)

// node is one Switchboard node running in the test process on a real socket.
type node struct {
	srv   *service.Server
	name  string
	base  string // http://127.0.0.1:port
	hub   *subscriptions.Hub
	stop  context.CancelFunc
	done  chan struct{}
	hubOK chan struct{}
}

type nodeOptions struct {
	service       service.Config
	subscriptions subscriptions.Config
	events        events.Config // the queue runs always, as in main: it counts presence
}

// withTokens puts a node in token mode, verifying tokens under cfg (which must name a key).
func withTokens(t testing.TB, cfg tokens.Config) func(*nodeOptions) {
	t.Helper()
	v, err := tokens.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return func(o *nodeOptions) { o.service.Tokens = v }
}

// withSecret puts a node in token mode with HS256 tokens signed with secret.
func withSecret(t testing.TB, secret []byte) func(*nodeOptions) {
	return withTokens(t, tokens.Config{Secret: secret})
}

// startNode runs a node on the backend be. Nodes of one test share the backend's key prefix,
// so they see each other's messages and nothing of other tests'.
func startNode(t testing.TB, be backend, name string, mods ...func(*nodeOptions)) *node {
	t.Helper()
	prefix := be.prefix
	rdb := be.open(t, true)
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})).With("node", name)
	reg := service.NewRegistry() // one registry for the node's parts, as in main
	o := nodeOptions{
		subscriptions: subscriptions.Config{Node: name, Prefix: prefix, Logger: log, Heartbeat: 200 * time.Millisecond, Observer: service.NewHubMetrics(reg)},
		service:       service.Config{Logger: log, Registerer: reg},
		events:        events.Config{Node: name, Prefix: prefix, Logger: log},
	}
	for _, m := range mods {
		m(&o)
	}
	queue, err := events.New(rdb, o.events)
	if err != nil {
		t.Fatal(err)
	}
	if o.subscriptions.OnNodeGone == nil {
		o.subscriptions.OnNodeGone = queue.Presence().Janitor().NodeGone
	}
	hub, err := subscriptions.New(rdb, o.subscriptions)
	if err != nil {
		t.Fatal(err)
	}
	o.service.Events = queue
	srv := service.New(hub, o.service)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	hubCtx, stopHub := context.WithCancel(context.Background())
	n := &node{srv: srv, name: name, base: "http://" + ln.Addr().String(), hub: hub, stop: cancel, done: make(chan struct{}), hubOK: make(chan struct{})}
	queueDone := make(chan struct{})
	go func() {
		defer close(queueDone)
		_ = queue.Run(hubCtx)
	}()
	go func() {
		defer close(n.hubOK)
		_ = hub.Run(hubCtx)
		<-queueDone
	}()
	go func() {
		defer close(n.done)
		if err := srv.Serve(ctx, ln); err != nil {
			t.Errorf("node %s: serve: %v", name, err)
		}
		stopHub()
		<-n.hubOK
		_ = rdb.Close()
	}()
	t.Cleanup(n.Stop)
	testutil.WaitFor(t, 10*time.Second, func() bool { return hub.Ready() == nil }, "node "+name+" ready")
	return n
}

func (n *node) srvSlowCloses() int64 { return n.srv.SlowConsumerCloses() }

// Stop drains the node and waits until it has stopped.
func (n *node) Stop() {
	n.stop()
	<-n.done
}

func (n *node) wsURL(query string) string {
	return "ws" + strings.TrimPrefix(n.base, "http") + "/ws?" + query
}

// connect opens a WebSocket as user (dev auth) and returns it with its welcome frame.
func connect(t *testing.T, n *node, user string, extra ...string) (*wsclient.Conn, wsclient.Frame) {
	t.Helper()
	q := url.Values{"user": {user}}
	for i := 0; i+1 < len(extra); i += 2 {
		q.Set(extra[i], extra[i+1])
	}
	c, err := wsclient.Dial(n.wsURL(q.Encode()), wsclient.Options{})
	if err != nil {
		t.Fatalf("dial %s as %s: %v", n.name, user, err)
	}
	t.Cleanup(c.Close)
	w, err := c.NextWithin(10 * time.Second)
	if err != nil || w.Type != "welcome" {
		t.Fatalf("first frame of %s on %s: %+v, %v", user, n.name, w, err)
	}
	return c, w
}

// next reads the next frame, which must be of type typ. The sender's copies of the
// connection's own direct messages (messages with "to") are skipped: they arrive before or
// after the ack, and only the tests of copies (conversations_test.go) read them.
func next(t *testing.T, c *wsclient.Conn, typ string) wsclient.Frame {
	t.Helper()
	for {
		f, err := c.NextWithin(10 * time.Second)
		if err != nil {
			t.Fatalf("waiting for a %s frame: %v", typ, err)
		}
		if f.Type == "message" && f.To != "" {
			continue
		}
		if f.Type != typ {
			t.Fatalf("want a %s frame, got %s", typ, f.Raw)
		}
		return f
	}
}

// noFrame checks that nothing arrives on c within d.
func noFrame(t *testing.T, c *wsclient.Conn, d time.Duration) {
	t.Helper()
	if f, err := c.NextWithin(d); err == nil {
		t.Fatalf("unexpected frame: %s", f.Raw)
	}
}

type response struct {
	status int
	body   []byte
	header http.Header
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("response %d is not JSON: %q", r.status, r.body)
	}
	return m
}

// errorCode returns the code of an error body, failing if the body is not one.
func (r response) errorCode(t *testing.T) string {
	t.Helper()
	var e struct {
		Error struct{ Code, Message string }
	}
	if err := json.Unmarshal(r.body, &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
		t.Fatalf("status %d: body is not an error object: %q", r.status, r.body)
	}
	return e.Error.Code
}

// do makes a request and checks its answer against the OpenAPI document.
func do(t *testing.T, method, u, contentType string, body io.Reader, header ...string) response {
	t.Helper()
	r, err := request(method, u, contentType, body, header...)
	if err != nil {
		t.Fatal(err)
	}
	checkOpenAPI(t, method, u, r) // every API answer a test sees is as documented
	return r
}

// request is do for goroutines other than the test's: it returns its error instead of
// failing the test, which only the test's goroutine may do.
func request(method, u, contentType string, body io.Reader, header ...string) (response, error) {
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		return response{}, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return response{}, fmt.Errorf("%s %s: %w", method, u, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return response{status: res.StatusCode, body: b, header: res.Header}, nil
}

// sendDM posts a JSON direct message and returns its id.
func sendDM(t *testing.T, n *node, user, data string) string {
	t.Helper()
	id, err := postDM(n, user, data)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// postDM is sendDM for goroutines other than the test's: it returns its error.
func postDM(n *node, user, data string) (string, error) {
	r, err := request("POST", n.base+"/v1/users/"+user+"/messages", "application/json", strings.NewReader(data))
	if err != nil {
		return "", err
	}
	if r.status != http.StatusAccepted {
		return "", fmt.Errorf("POST DM to %s: %d %s", user, r.status, r.body)
	}
	var answer struct{ ID string }
	if err := json.Unmarshal(r.body, &answer); err != nil || answer.ID == "" {
		return "", fmt.Errorf("POST DM: no id in %s", r.body)
	}
	return answer.ID, nil
}

// numsub returns how many subscribers Redis counts on user's channel of the test prefix.
func numsub(t *testing.T, rdb *redis.Client, user string) int64 {
	t.Helper()
	ch := subscriptions.ChannelName("t", user)
	m, err := rdb.PubSubNumSub(context.Background(), ch).Result()
	if err != nil {
		t.Fatal(err)
	}
	return m[ch]
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func startRedis(t testing.TB) (*redistest.Server, *redis.Client) {
	srv := redistest.Start(t)
	return srv, srv.Client(t)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// backend is the Redis a test's nodes run on: a redis-server of its own, or a share of a
// Redis Cluster under a key prefix of its own. Tests written against a backend run on both
// (suite_test.go).
type backend struct {
	url        string   // a redis-server's URL; empty on a Redis Cluster
	cluster    []string // a Redis Cluster's seed addresses
	sentinel   []string // Sentinel addresses, with master the master's name
	master     string
	prefix     string // the key prefix of its nodes
	killPubSub func(t *testing.T)
}

// onRedis is the backend of one redis-server, under the prefix "t".
func onRedis(srv *redistest.Server) backend {
	return backend{url: srv.URL(), prefix: "t", killPubSub: func(t *testing.T) { srv.KillPubSubClients(t) }}
}

// onCluster is a share of a Redis Cluster: its keys and channels are under prefix.
func onCluster(cl *redistest.Cluster, masters int, prefix string) backend {
	return backend{cluster: cl.Addrs(), prefix: prefix, killPubSub: func(t *testing.T) {
		for n := range masters {
			cl.Node(n).KillPubSubClients(t)
		}
	}}
}

// singleRedis starts a redis-server for the test.
func singleRedis(t *testing.T) backend {
	return onRedis(redistest.Start(t))
}

// open returns a new client on the backend that never retries a command (a retried script
// could run twice), as main builds them. A node's client also bounds each command's time by
// its context and a 2 s read timeout.
func (be backend) open(t testing.TB, node bool) redis.UniversalClient {
	t.Helper()
	var timeout time.Duration
	if node {
		timeout = 2 * time.Second
	}
	if be.sentinel != nil {
		return redis.NewFailoverClient(&redis.FailoverOptions{MasterName: be.master, SentinelAddrs: be.sentinel,
			MaxRetries: -1, ContextTimeoutEnabled: node, ReadTimeout: timeout})
	}
	if be.url == "" {
		return redis.NewClusterClient(&redis.ClusterOptions{Addrs: be.cluster,
			MaxRetries: -1, ContextTimeoutEnabled: node, ReadTimeout: timeout})
	}
	opts, err := redis.ParseURL(be.url)
	if err != nil {
		t.Fatal(err)
	}
	opts.MaxRetries = -1
	opts.ContextTimeoutEnabled = node
	opts.ReadTimeout = timeout
	return redis.NewClient(opts)
}

// usedMemory returns Redis's used_memory: of the server, or summed over a cluster's masters.
func usedMemory(t *testing.T, rdb redis.UniversalClient) int64 {
	t.Helper()
	ctx := context.Background()
	parse := func(info string) int64 {
		for _, line := range strings.Split(info, "\r\n") {
			if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
				n, err := strconv.ParseInt(v, 10, 64)
				must(t, err)
				return n
			}
		}
		t.Fatalf("no used_memory in %q", info)
		return 0
	}
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		var mu sync.Mutex
		var sum int64
		must(t, cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			info, err := c.Info(ctx, "memory").Result()
			if err != nil {
				return err
			}
			mu.Lock()
			sum += parse(info)
			mu.Unlock()
			return nil
		}))
		return sum
	}
	info, err := rdb.Info(ctx, "memory").Result()
	must(t, err)
	return parse(info)
}
