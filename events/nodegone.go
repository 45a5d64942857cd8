package events

import (
	"context"
	"log/slog"
	"time"

	"github.com/switchboard-dev/switchboard/subscriptions"
)

// Registry lists the nodes of the deployment that are alive; *subscriptions.Hub is one.
type Registry interface {
	Nodes(ctx context.Context) ([]subscriptions.NodeInfo, error)
}

// janitorInterval is how often a Janitor looks for presence counts of dead nodes.
const janitorInterval = 15 * time.Second

// Janitor is the one place a dead node's presence is cleared: whoever learns that a node
// is gone calls NodeGone, and Run finds the dead nodes no one reported. Without it a node
// that dies leaves its users counted online.
type Janitor struct {
	p        *Presence
	node     string // this node
	log      *slog.Logger
	interval time.Duration
}

// Janitor returns the janitor of this queue's node. Hand its NodeGone to the node registry
// (subscriptions.Config.OnNodeGone) and run Run for as long as the node runs.
func (p *Presence) Janitor() *Janitor {
	return &Janitor{p: p, node: p.q.cfg.Node, log: p.q.log, interval: janitorInterval}
}

// NodeGone clears the presence counts of node, which is gone (its registry entry expired:
// it crashed or was cut off), queueing user.offline for its users with no connection left
// anywhere. Failures are logged: the next Run check retries them.
func (j *Janitor) NodeGone(ctx context.Context, node string) {
	if n, err := j.p.NodeGone(ctx, node); err != nil {
		if ctx.Err() == nil {
			j.log.Warn("clearing a dead node's presence failed", "gone", node, "err", err)
		}
	} else if n > 0 {
		j.log.Info("users of a dead node went offline", "gone", node, "users", n)
	}
}

// Run clears what an earlier process with this node's id left counted, then until ctx ends
// clears any node that holds counts but has been missing from reg for two checks in a row:
// the registry reports nodes that announced and died, this also covers one that died before
// it announced or while no node watched. It returns nil when ctx ends.
func (j *Janitor) Run(ctx context.Context, reg Registry) error {
	j.NodeGone(ctx, j.node)
	missing := map[string]bool{}
	t := time.NewTicker(j.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		missing = j.sweep(ctx, reg, missing)
	}
}

// sweep clears the nodes that hold counts and were missing from reg in the last check too,
// and returns the ones missing for the first time.
func (j *Janitor) sweep(ctx context.Context, reg Registry, missing map[string]bool) map[string]bool {
	counted, err := j.p.Nodes(ctx)
	if err != nil {
		return missing
	}
	live, err := reg.Nodes(ctx)
	if err != nil {
		return missing
	}
	alive := make(map[string]bool, len(live)+1)
	alive[j.node] = true
	for _, l := range live {
		alive[l.Node] = true
	}
	stillMissing := map[string]bool{}
	for _, n := range counted {
		switch {
		case alive[n]:
		case missing[n]:
			j.NodeGone(ctx, n)
		default:
			stillMissing[n] = true
		}
	}
	return stillMissing
}
