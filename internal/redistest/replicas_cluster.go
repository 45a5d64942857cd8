package redistest

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// StartClusterWithReplicas starts a Redis Cluster of masters masters with one replica each:
// Node(0) to Node(masters-1) are the masters, the rest their replicas (redis-cli pairs them).
// It returns once every slot is served and every master has an online replica, so that
// killing a master is followed by its replica's promotion (cluster-node-timeout 2 s).
func StartClusterWithReplicas(t testing.TB, masters int) *Cluster {
	t.Helper()
	if masters < 3 {
		t.Fatalf("redistest: a cluster needs at least 3 masters, got %d", masters)
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Fatalf("redistest: redis-cli not found on PATH (%v)", err)
	}
	c := &Cluster{}
	for range 2 * masters {
		c.nodes = append(c.nodes, Start(t, withCluster()))
	}
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redistest: redis-cli --cluster create: %v\n%s", err, out)
	}
	err = poll(clusterTimeout, func() error {
		if err := c.ReadyWithout(ctx, -1); err != nil {
			return err
		}
		for i := range masters {
			if n := c.nodes[i].OnlineReplicas(t); n < 1 {
				return errNoReplica(c.nodes[i].Addr())
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("redistest: cluster %v not ready: %v", c.Addrs(), err)
	}
	return c
}

type errNoReplica string

func (e errNoReplica) Error() string { return string(e) + " has no online replica yet" }

// ReadyWithout reports whether every node but Node(skip) (none when skip < 0) sees the
// cluster ok with every slot served, none of them by Node(skip): after a master is killed,
// that its replica took over.
func (c *Cluster) ReadyWithout(ctx context.Context, skip int) error {
	for i, n := range c.nodes {
		if i == skip {
			continue
		}
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		err := n.clusterReady(ctx)
		if err == nil && skip >= 0 {
			err = n.servesNothingOf(ctx, c.nodes[skip].port)
		}
		cancel()
		if err != nil {
			return err
		}
	}
	return nil
}

// servesNothingOf reports an error while this node's CLUSTER SLOTS still names the node on
// port as a slot range's master.
func (s *Server) servesNothingOf(ctx context.Context, port int) error {
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1})
	defer rdb.Close()
	ranges, err := rdb.ClusterSlots(ctx).Result()
	if err != nil {
		return err
	}
	for _, r := range ranges {
		if len(r.Nodes) > 0 && strings.HasSuffix(r.Nodes[0].Addr, ":"+strconv.Itoa(port)) {
			return fmt.Errorf("%s: slots %d-%d still on the dead master", s.Addr(), r.Start, r.End)
		}
	}
	return nil
}

// ReplicaOf returns the node that replicates Node(master), failing the test without one.
func (c *Cluster) ReplicaOf(t testing.TB, master int) *Server {
	t.Helper()
	want := "master_port:" + strconv.Itoa(c.nodes[master].port)
	for i, n := range c.nodes {
		if i == master {
			continue
		}
		rdb := redis.NewClient(&redis.Options{Addr: n.Addr()})
		info, err := rdb.Info(context.Background(), "replication").Result()
		rdb.Close()
		if err == nil && strings.Contains(info, want+"\r\n") {
			return n
		}
	}
	t.Fatalf("redistest: no replica of %s", c.nodes[master].Addr())
	return nil
}
