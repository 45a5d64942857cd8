package redistest

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// StartReplica runs a redis-server that replicates master (--replicaof) and waits until
// master counts it as an online replica, so that a test's first write is replicated. Stop
// kills it like any server: the master then sees one replica fewer.
func StartReplica(t testing.TB, master *Server, opts ...Option) *Server {
	t.Helper()
	opts = append([]Option{WithArgs("--replicaof", "127.0.0.1", strconv.Itoa(master.port))}, opts...)
	r := Start(t, opts...)
	deadline := time.Now().Add(readyTimeout)
	for master.OnlineReplicas(t) < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("redistest: the replica on %s did not come online on %s\n%s", r.Addr(), master.Addr(), r.logTail())
		}
		time.Sleep(20 * time.Millisecond) // polling Redis's own view, with a deadline
	}
	return r
}

// OnlineReplicas returns how many replicas the server reports online (INFO replication).
func (s *Server) OnlineReplicas(t testing.TB) int {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr()})
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	info, err := rdb.Info(ctx, "replication").Result()
	if err != nil {
		t.Fatalf("redistest: INFO replication on %s: %v", s.Addr(), err)
	}
	n := 0
	for _, line := range strings.Split(info, "\r\n") {
		if strings.HasPrefix(line, "slave") && strings.Contains(line, "state=online") {
			n++
		}
	}
	return n
}
