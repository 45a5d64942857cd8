package subscriptions

import (
	"context"
	"fmt"
	"time"
)

// Ready reports whether the node can serve: Redis answers and its Pub/Sub connections are up
// and answered within three heartbeats. On a single Redis that is the one connection. On
// Redis Cluster a node is ready while at least half of its bucket links are healthy: one
// master failing over affects the users of its slots on every node, and taking every node
// out of the load balancer for it would turn a partial outage into a total one; the links
// of that master are rebuilt and caught up meanwhile.
func (h *Hub) Ready() error {
	if !h.redisOK.Load() {
		return fmt.Errorf("%w: redis does not answer", ErrUnavailable)
	}
	links := h.allLinks()
	if !h.cluster && len(links) == 0 {
		return fmt.Errorf("%w: pubsub connection not started", ErrUnavailable)
	}
	down := 0
	for _, l := range links {
		if !l.healthy() {
			down++
		}
	}
	if down > 0 && (!h.cluster || 2*down > len(links)) {
		return fmt.Errorf("%w: %d of %d pubsub connections down or quiet", ErrUnavailable, down, len(links))
	}
	return nil
}

// watchdog checks every link each heartbeat and rebuilds the quiet ones.
func (h *Hub) watchdog(ctx context.Context) {
	t := time.NewTicker(h.cfg.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, l := range h.allLinks() {
			l.checkQuiet(ctx)
		}
	}
}

// healthLoop pings Redis on the command client every heartbeat for readiness. It runs apart
// from the watchdog because a PING to a frozen Redis blocks until the client's read timeout.
func (h *Hub) healthLoop(ctx context.Context) {
	t := time.NewTicker(h.cfg.Heartbeat)
	defer t.Stop()
	for {
		h.checkRedis(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (h *Hub) checkRedis(ctx context.Context) {
	pctx, cancel := context.WithTimeout(ctx, h.cfg.Heartbeat)
	defer cancel()
	sent := time.Now()
	now, err := h.rdb.Time(pctx).Result()
	ok := err == nil
	if !ok && ctx.Err() == nil {
		h.obs.ObserveRedisError()
	}
	if ok {
		// Redis read its clock about halfway through the round trip.
		local := sent.Add(time.Since(sent) / 2)
		h.clockOffset.Store(now.UnixMilli() - local.UnixMilli())
	}
	if h.redisOK.Swap(ok) != ok {
		if ok {
			h.log.Info("redis is reachable")
		} else if ctx.Err() == nil {
			h.log.Warn("redis does not answer")
		}
	}
}
