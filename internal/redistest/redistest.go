// Package redistest starts real redis-server processes for integration tests.
//
// Every server listens on its own free loopback port with no persistence, so
// tests never touch the machine's Redis on 127.0.0.1:6379 and can run in
// parallel. Each process is killed by t.Cleanup. The helpers that simulate
// failures (Stop, Restart, Freeze, KillPubSubClients) exist because the
// service's recovery paths are only believable when tested against a Redis
// that really goes away.
package redistest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// readyTimeout bounds how long a redis-server may take to answer PING.
const readyTimeout = 10 * time.Second

// startAttempts is how many fresh ports Start tries, because another process
// may take a port between choosing it and redis-server binding it.
const startAttempts = 5

// errExited reports that redis-server quit before it was ready.
var errExited = errors.New("redis-server exited before it was ready")

// errPortInUse reports that redis-server quit because another process took
// its port (or bus port) first; that is worth retrying, a bad argument is not.
var errPortInUse = fmt.Errorf("port already in use: %w", errExited)

// Option changes how Start runs redis-server.
type Option func(*config)

type config struct {
	args    []string
	cluster bool
}

// WithArgs appends extra command-line arguments for redis-server, such as
// WithArgs("--maxmemory", "10mb").
func WithArgs(args ...string) Option {
	return func(c *config) { c.args = append(c.args, args...) }
}

// withCluster makes the server a cluster node. It is not an Option users pass
// because a node is useless until StartCluster assigns slots to it.
func withCluster() Option {
	return func(c *config) { c.cluster = true }
}

// Server is one redis-server process owned by a test.
type Server struct {
	bin     string
	dir     string
	cfg     config
	port    int
	busPort int // cluster bus port, zero unless cfg.cluster

	mu     sync.Mutex
	proc   *os.Process
	exited chan struct{} // closed once proc has been reaped
	frozen bool
}

// Start runs redis-server on a free loopback port, waits until it answers,
// and kills it when the test ends. It fails the test if redis-server is not
// installed, rather than skipping, so a missing dependency never looks like
// a pass.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redistest: redis-server not found on PATH (%v); run scripts/test, which installs it", err)
	}
	s := &Server{bin: bin, dir: t.TempDir()}
	for _, o := range opts {
		o(&s.cfg)
	}
	// Registered after t.TempDir so it runs before the directory is removed.
	t.Cleanup(s.Stop)

	s.mu.Lock()
	defer s.mu.Unlock()
	for range startAttempts {
		if s.port, err = freePort(); err != nil {
			break
		}
		if s.cfg.cluster {
			// An explicit bus port, because the default port+10000 can be
			// past 65535 or already taken.
			if s.busPort, err = freePort(); err != nil {
				break
			}
		}
		if err = s.launch(); !errors.Is(err, errPortInUse) {
			break
		}
	}
	if err != nil {
		t.Fatalf("redistest: start redis-server: %v\n%s", err, s.logTail())
	}
	return s
}

// Addr returns the server's address, "127.0.0.1:port".
func (s *Server) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

// URL returns a redis:// URL for database 0, the form the service's config takes.
func (s *Server) URL() string {
	return "redis://" + s.Addr() + "/0"
}

// Client returns a go-redis client for test assertions, closed when the test ends.
func (s *Server) Client(t testing.TB) *redis.Client {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr()})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// Stop kills redis-server with SIGKILL and waits for it, simulating Redis
// dying without a goodbye. Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked()
}

func (s *Server) stopLocked() {
	if s.proc == nil {
		return
	}
	if s.frozen {
		// Linux delivers SIGKILL to a stopped process anyway; continuing it
		// first keeps that from being a portability assumption.
		_ = s.proc.Signal(syscall.SIGCONT)
		s.frozen = false
	}
	_ = s.proc.Kill()
	<-s.exited
	s.proc = nil
}

// Restart starts redis-server again on the same port, stopping it first if
// it is still running, and waits until it answers. The data is gone, as after
// a real crash of a Redis without persistence; a cluster node keeps its
// nodes.conf and so rejoins with its slots.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked()
	// The same port may be briefly unavailable, so retry until the deadline
	// instead of giving up on the first failed bind.
	deadline := time.Now().Add(readyTimeout)
	for {
		err := s.launch()
		if err == nil {
			return
		}
		if !errors.Is(err, errPortInUse) || time.Now().After(deadline) {
			t.Fatalf("redistest: restart redis-server on %s: %v\n%s", s.Addr(), err, s.logTail())
		}
		time.Sleep(50 * time.Millisecond) // back off before rebinding; not waiting on a condition
	}
}

// Freeze suspends redis-server with SIGSTOP: connections still open but
// nothing answers, like a black-holed network. Thaw resumes it; cleanup
// resumes it too before killing.
func (s *Server) Freeze() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil && !s.frozen {
		_ = s.proc.Signal(syscall.SIGSTOP)
		s.frozen = true
	}
}

// Thaw resumes a server suspended by Freeze with SIGCONT.
func (s *Server) Thaw() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil && s.frozen {
		_ = s.proc.Signal(syscall.SIGCONT)
		s.frozen = false
	}
}

// KillPubSubClients disconnects every client in Pub/Sub mode, as Redis does
// to a subscriber that exceeds its output buffer limit or during a failover.
func (s *Server) KillPubSubClients(t testing.TB) {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr()})
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := rdb.ClientKillByFilter(ctx, "TYPE", "pubsub").Err(); err != nil {
		t.Fatalf("redistest: CLIENT KILL TYPE pubsub on %s: %v", s.Addr(), err)
	}
}

// launch starts the process and waits until it answers as itself. The caller
// holds s.mu.
func (s *Server) launch() error {
	args := []string{
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", s.dir,
		"--daemonize", "no",
	}
	if s.cfg.cluster {
		args = append(args,
			"--cluster-enabled", "yes",
			"--cluster-port", strconv.Itoa(s.busPort),
			"--cluster-config-file", filepath.Join(s.dir, fmt.Sprintf("nodes-%d.conf", s.port)),
			"--cluster-node-timeout", "2000",
		)
	}
	args = append(args, s.cfg.args...)

	logFile, err := os.OpenFile(s.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	logStart, err := logFile.Seek(0, io.SeekEnd)
	if err != nil {
		logFile.Close()
		return err
	}
	fmt.Fprintf(logFile, "=== redistest: %s %s\n", s.bin, strings.Join(args, " "))
	cmd := exec.Command(s.bin, args...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return err
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		close(exited)
	}()
	s.proc, s.exited = cmd.Process, exited

	// Checking the pid, not just PING, because if another redis-server won
	// the port race it would answer PING while ours is exiting.
	pid := cmd.Process.Pid
	err = poll(readyTimeout, func() error {
		select {
		case <-exited:
			return errExited
		default:
		}
		got, err := serverPID(s.Addr())
		if err == nil && got != pid {
			err = fmt.Errorf("%s is answered by pid %d, not ours (%d)", s.Addr(), got, pid)
		}
		return err
	})
	if err != nil {
		s.stopLocked()
	}
	if errors.Is(err, errExited) && s.logSince(logStart, "Address already in use") {
		err = errPortInUse
	}
	return err
}

// logSince reports whether the output written after offset contains text.
func (s *Server) logSince(offset int64, text string) bool {
	b, err := os.ReadFile(s.logPath())
	return err == nil && int64(len(b)) >= offset && bytes.Contains(b[offset:], []byte(text))
}

func (s *Server) logPath() string { return filepath.Join(s.dir, "redis-server.log") }

// logTail returns the end of the server's output, which says why it failed.
func (s *Server) logTail() string {
	b, err := os.ReadFile(s.logPath())
	if err != nil {
		return "(no redis-server output: " + err.Error() + ")"
	}
	const max = 4 << 10
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return "redis-server output (" + s.logPath() + "):\n" + string(b)
}

// freePort asks the kernel for an unused loopback port. Another process can
// take it before redis-server binds it, which is why callers retry.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// serverPID sends INFO server over a raw connection and returns process_id.
// It speaks RESP directly so that readiness polling does not make go-redis
// log every refused connection.
func serverPID(addr string) (int, error) {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := io.WriteString(conn, "*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n"); err != nil {
		return 0, err
	}
	r := bufio.NewReader(conn)
	header, err := r.ReadString('\n')
	if err != nil {
		return 0, err
	}
	header = strings.TrimSpace(header)
	if !strings.HasPrefix(header, "$") {
		return 0, fmt.Errorf("INFO server: %s", header) // e.g. -LOADING
	}
	n, err := strconv.Atoi(header[1:])
	if err != nil {
		return 0, fmt.Errorf("INFO server: bad reply %q", header)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, err
	}
	for _, line := range bytes.Split(body, []byte("\r\n")) {
		if v, ok := bytes.CutPrefix(line, []byte("process_id:")); ok {
			return strconv.Atoi(string(v))
		}
	}
	return 0, errors.New("INFO server: no process_id")
}

// poll calls check until it returns nil or timeout passes, and then returns
// check's last error. errExited ends it early, since that cannot change.
func poll(timeout time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return nil
		}
		if errors.Is(err, errExited) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
}

// clusterTimeout bounds how long a new cluster may take to agree on its slots.
const clusterTimeout = 30 * time.Second

// Cluster is a Redis Cluster of masters without replicas, owned by a test.
type Cluster struct {
	nodes []*Server
}

// StartCluster starts masters cluster nodes (at least 3, as redis-cli
// requires), spreads the 16384 slots across them with redis-cli, and waits
// until every node agrees that all slots are served.
func StartCluster(t testing.TB, masters int) *Cluster {
	t.Helper()
	if masters < 3 {
		t.Fatalf("redistest: a cluster needs at least 3 masters, got %d", masters)
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Fatalf("redistest: redis-cli not found on PATH (%v); run scripts/test, which installs it", err)
	}
	c := &Cluster{}
	for range masters {
		c.nodes = append(c.nodes, Start(t, withCluster()))
	}

	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redistest: redis-cli --cluster create: %v\n%s", err, out)
	}

	// redis-cli returns once the nodes have met, which is before every node
	// has learned every other node's slots; clients connecting earlier
	// would see CLUSTERDOWN or MOVED loops.
	err = poll(clusterTimeout, func() error {
		for _, n := range c.nodes {
			if err := n.clusterReady(ctx); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("redistest: cluster %v not ready: %v", c.Addrs(), err)
	}
	return c
}

// Addrs returns the address of every node, in Node order.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		addrs[i] = n.Addr()
	}
	return addrs
}

// Client returns a go-redis cluster client for all nodes, closed when the test ends.
func (c *Cluster) Client(t testing.TB) *redis.ClusterClient {
	t.Helper()
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// Node returns the i-th node, so a test can Stop, Freeze or KillPubSubClients
// on one shard of the cluster.
func (c *Cluster) Node(i int) *Server {
	return c.nodes[i]
}

// clusterReady reports whether this node sees cluster_state:ok and an owner
// for every slot.
func (s *Server) clusterReady(ctx context.Context) error {
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1})
	defer rdb.Close()
	info, err := rdb.ClusterInfo(ctx).Result()
	if err != nil {
		return fmt.Errorf("%s: CLUSTER INFO: %w", s.Addr(), err)
	}
	if !strings.Contains(info, "cluster_state:ok") {
		return fmt.Errorf("%s: cluster_state is not ok", s.Addr())
	}
	ranges, err := rdb.ClusterSlots(ctx).Result()
	if err != nil {
		return fmt.Errorf("%s: CLUSTER SLOTS: %w", s.Addr(), err)
	}
	covered := 0
	for _, r := range ranges {
		covered += r.End - r.Start + 1
	}
	if covered != 16384 {
		return fmt.Errorf("%s: sees %d of 16384 slots", s.Addr(), covered)
	}
	return nil
}
