package service_test

import (
	"context"
	"testing"

	"github.com/switchboard-dev/switchboard/internal/redistest"
)

// TestClusterFailoverWithReplicasDuplicatesNothing: a Redis Cluster of 3 masters with a
// replica each; 8 senders post DMs and room messages (retrying under their keys) to 8 users
// spread over the masters, who follow on a node; master 0 is SIGKILLed mid-stream and its
// replica promoted. The node's sharded Pub/Sub follows the promotion and the users get
// every message once. Without a wait for replicas (not built on a cluster yet) a message
// the dead master acknowledged may be lost: the count is logged (docs/redis-cluster.md).
func TestClusterFailoverWithReplicasDuplicatesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Redis Cluster with replicas")
	}
	cl := redistest.StartClusterWithReplicas(t, 3)
	a := startNode(t, onCluster(cl, 3, "f"), "a")
	users := []string{"u0", "u1", "u2", "u3", "u4", "u5", "u6", "u7"}
	lost, duplicated := failoverRun(t, a, users, cl.Node(0).Stop, func() bool {
		return cl.ReadyWithout(context.Background(), 0) == nil
	})
	t.Logf("without a wait for replicas: %d acknowledged messages lost", lost)
	if duplicated > 0 {
		t.Fatalf("%d messages arrived twice across the failover", duplicated)
	}
}
