package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Sentinel is one redis-server --sentinel process owned by a test.
type Sentinel struct {
	port int
	proc *os.Process
	dir  string
}

// Addr returns the sentinel's address, "127.0.0.1:port".
func (s *Sentinel) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// StartSentinels runs n sentinels that monitor master under name with a quorum of n/2+1,
// quick to act (down after 1 s, failover timeout 5 s) so a failover test finishes in
// seconds, and waits until each answers and knows the master. They are killed when the
// test ends.
func StartSentinels(t testing.TB, name string, master *Server, n int) []*Sentinel {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redistest: redis-server not found on PATH (%v)", err)
	}
	out := make([]*Sentinel, n)
	for i := range out {
		out[i] = startSentinel(t, bin, name, master, n/2+1)
	}
	return out
}

func startSentinel(t testing.TB, bin, name string, master *Server, quorum int) *Sentinel {
	t.Helper()
	s := &Sentinel{dir: t.TempDir()}
	var err error
	for range startAttempts {
		if s.port, err = freePort(); err != nil {
			break
		}
		conf := filepath.Join(s.dir, "sentinel.conf")
		// Sentinel rewrites its config file: it must be its own and writable.
		text := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nsentinel monitor %s 127.0.0.1 %d %d\n"+
			"sentinel down-after-milliseconds %s 1000\nsentinel failover-timeout %s 5000\nsentinel parallel-syncs %s 1\n",
			s.port, s.dir, name, master.port, quorum, name, name, name)
		if err = os.WriteFile(conf, []byte(text), 0o644); err != nil {
			break
		}
		log, _ := os.Create(filepath.Join(s.dir, "sentinel.log"))
		cmd := exec.Command(bin, conf, "--sentinel")
		cmd.Stdout, cmd.Stderr = log, log
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err = cmd.Start(); err != nil {
			break
		}
		s.proc = cmd.Process
		go func() { _ = cmd.Wait(); log.Close() }()
		if err = s.ready(name); err == nil {
			break
		}
		_ = s.proc.Kill()
	}
	if err != nil {
		b, _ := os.ReadFile(filepath.Join(s.dir, "sentinel.log"))
		t.Fatalf("redistest: start sentinel: %v\n%s", err, b)
	}
	t.Cleanup(func() { _ = s.proc.Kill() })
	return s
}

// ready polls until the sentinel answers with the master's address.
func (s *Sentinel) ready(name string) error {
	c := redis.NewSentinelClient(&redis.Options{Addr: s.Addr()})
	defer c.Close()
	deadline := time.Now().Add(readyTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := c.GetMasterAddrByName(ctx, name).Result()
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond) // polling the process's readiness, with a deadline
	}
}

// MasterAddr returns the address the sentinel gives for the master called name.
func (s *Sentinel) MasterAddr(name string) (string, error) {
	c := redis.NewSentinelClient(&redis.Options{Addr: s.Addr()})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	v, err := c.GetMasterAddrByName(ctx, name).Result()
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(v[0], v[1]), nil
}

// WaitSentinelsAgree polls until every sentinel sees the others and replicas replicas of
// the master called name: only then can they agree on a failover.
func WaitSentinelsAgree(t testing.TB, ss []*Sentinel, name string, replicas int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for _, s := range ss {
		c := redis.NewSentinelClient(&redis.Options{Addr: s.Addr()})
		for {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			m, err := c.Master(ctx, name).Result()
			cancel()
			others, _ := strconv.Atoi(m["num-other-sentinels"])
			slaves, _ := strconv.Atoi(m["num-slaves"])
			if err == nil && others >= len(ss)-1 && slaves >= replicas {
				break
			}
			if time.Now().After(deadline) {
				c.Close()
				t.Fatalf("redistest: sentinel %s sees %v (err %v), want %d others and %d replicas", s.Addr(), m, err, len(ss)-1, replicas)
			}
			time.Sleep(50 * time.Millisecond) // polling the sentinels' gossip, with a deadline
		}
		c.Close()
	}
}
