package subscriptions

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// NodeInfo is what a node announces about itself in the registry.
type NodeInfo struct {
	Node        string    `json:"node"`
	Addr        string    `json:"addr,omitempty"`
	Started     time.Time `json:"started"`
	Connections int       `json:"connections"`
	Users       int       `json:"users"`
	LastSeen    time.Time `json:"last_seen"`
}

// registryTTL is how long a node stays listed after its last heartbeat: a crashed node
// drops out within a few heartbeats.
func (h *Hub) registryTTL() time.Duration { return 3 * h.cfg.RegistryInterval }

// announce writes this node's entry: its info with a TTL, and its expiry in the registry's
// sorted set (both in one slot, so one MULTI).
func (h *Hub) announce(ctx context.Context, started time.Time) error {
	st := h.Stats()
	now := time.Now()
	info, _ := json.Marshal(NodeInfo{Node: h.cfg.Node, Addr: h.cfg.Advertise, Started: started.UTC(),
		Connections: st.Connections, Users: st.Users, LastSeen: now.UTC()})
	ttl := h.registryTTL()
	_, err := h.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, h.keys.nodeInfo(h.cfg.Node), info, ttl)
		p.ZAdd(ctx, h.keys.nodes(), redis.Z{Score: float64(now.Add(ttl).UnixMilli()), Member: h.cfg.Node})
		return nil
	})
	return err
}

// registryLoop announces the node every RegistryInterval and reaps nodes whose entries
// expired, calling OnNodeGone for each exactly once across the deployment.
func (h *Hub) registryLoop(ctx context.Context) {
	started := time.Now()
	t := time.NewTicker(h.cfg.RegistryInterval)
	defer t.Stop()
	for {
		if err := h.announce(ctx, started); err != nil && ctx.Err() == nil {
			h.log.Warn("announcing the node failed", "err", err)
		}
		h.reapNodes(ctx)
		select {
		case <-ctx.Done():
			// Leave at once rather than after the TTL: a drained node is gone.
			lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			h.rdb.ZRem(lctx, h.keys.nodes(), h.cfg.Node)
			h.rdb.Del(lctx, h.keys.nodeInfo(h.cfg.Node))
			cancel()
			return
		case <-t.C:
		}
	}
}

// reapNodes removes expired nodes from the registry. ZREM answers 1 to exactly one caller,
// so a dead node's clean-up (OnNodeGone) runs once even with many nodes reaping.
func (h *Hub) reapNodes(ctx context.Context) {
	now := strconvMillis(time.Now())
	dead, err := h.rdb.ZRangeByScore(ctx, h.keys.nodes(), &redis.ZRangeBy{Min: "-inf", Max: "(" + now}).Result()
	if err != nil {
		return
	}
	for _, node := range dead {
		if n, err := h.rdb.ZRem(ctx, h.keys.nodes(), node).Result(); err == nil && n == 1 {
			h.log.Warn("node left the registry without saying goodbye", "gone", node)
			if h.cfg.OnNodeGone != nil {
				h.cfg.OnNodeGone(ctx, node)
			}
		}
	}
}

func strconvMillis(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }

// Nodes returns the live nodes of the deployment, sorted by id.
func (h *Hub) Nodes(ctx context.Context) ([]NodeInfo, error) {
	names, err := h.rdb.ZRangeByScore(ctx, h.keys.nodes(), &redis.ZRangeBy{Min: strconvMillis(time.Now()), Max: "+inf"}).Result()
	if err != nil {
		return nil, fmt.Errorf("%w: read registry: %w", ErrUnavailable, err)
	}
	nodes := []NodeInfo{}
	if len(names) == 0 {
		return nodes, nil
	}
	infoKeys := make([]string, len(names))
	for i, n := range names {
		infoKeys[i] = h.keys.nodeInfo(n)
	}
	vals, err := h.rdb.MGet(ctx, infoKeys...).Result()
	if err != nil {
		return nil, fmt.Errorf("%w: read registry: %w", ErrUnavailable, err)
	}
	for _, v := range vals {
		s, ok := v.(string)
		if !ok {
			continue // expired between the two reads
		}
		var info NodeInfo
		if json.Unmarshal([]byte(s), &info) == nil {
			nodes = append(nodes, info)
		}
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].Node < nodes[j].Node })
	return nodes, nil
}

// ClusterChannel is a subscribed user channel as Redis reports it.
type ClusterChannel struct {
	User        string `json:"user"`
	Channel     string `json:"channel"`
	Subscribers int64  `json:"subscribers"`
}

// ClusterStats is the deployment-wide view of the admin endpoint.
type ClusterStats struct {
	Nodes       []NodeInfo       `json:"nodes"`
	Channels    []ClusterChannel `json:"channels"`
	Truncated   bool             `json:"truncated,omitempty"`
	Connections int              `json:"connections"`
	Users       int              `json:"users"`
}

// ClusterStats lists the live nodes with their counts, and up to limit subscribed user
// channels with their subscriber counts (one per node holding the user) as Redis reports
// them: PUBSUB CHANNELS and NUMSUB, or SHARDCHANNELS and SHARDNUMSUB on each master of a
// cluster.
func (h *Hub) ClusterStats(ctx context.Context, limit int) (ClusterStats, error) {
	nodes, err := h.Nodes(ctx)
	if err != nil {
		return ClusterStats{}, err
	}
	st := ClusterStats{Nodes: nodes, Channels: []ClusterChannel{}}
	for _, n := range nodes {
		st.Connections += n.Connections
		st.Users += n.Users
	}
	pattern := "{" + h.keys.prefix + ":*}:user:*"
	var names []string
	if c, ok := h.rdb.(*redis.ClusterClient); ok {
		var mu sync.Mutex // ForEachMaster calls concurrently
		err = c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
			chs, err := m.PubSubShardChannels(ctx, pattern).Result()
			mu.Lock()
			names = append(names, chs...)
			mu.Unlock()
			return err
		})
	} else {
		names, err = h.rdb.PubSubChannels(ctx, pattern).Result()
	}
	if err != nil {
		return ClusterStats{}, fmt.Errorf("%w: list channels: %w", ErrUnavailable, err)
	}
	sort.Strings(names)
	if len(names) > limit {
		names, st.Truncated = names[:limit], true
	}
	counts, err := h.subscriberCounts(ctx, names)
	if err != nil {
		return ClusterStats{}, err
	}
	for _, ch := range names {
		user, ok := h.keys.userFromChannel(ch)
		if !ok {
			continue
		}
		st.Channels = append(st.Channels, ClusterChannel{User: user, Channel: ch, Subscribers: counts[ch]})
	}
	sort.Slice(st.Channels, func(i, j int) bool { return st.Channels[i].User < st.Channels[j].User })
	return st, nil
}

// Subscribers returns how many nodes are subscribed to user's channel.
func (h *Hub) Subscribers(ctx context.Context, user string) (int64, error) {
	ch := h.keys.userChannel(user)
	counts, err := h.subscriberCounts(ctx, []string{ch})
	return counts[ch], err
}

// subscriberCounts asks Redis how many subscribers each channel has: NUMSUB on a single
// Redis; on a cluster SHARDNUMSUB, which only the master owning a channel's slot can answer,
// so the channels are grouped by master and each group is one pipeline to it.
func (h *Hub) subscriberCounts(ctx context.Context, channels []string) (map[string]int64, error) {
	counts := make(map[string]int64, len(channels))
	fail := func(err error) (map[string]int64, error) {
		return counts, fmt.Errorf("%w: count subscribers: %w", ErrUnavailable, err)
	}
	c, ok := h.rdb.(*redis.ClusterClient)
	if !ok {
		// One round trip, however many channels: NUMSUB of 500 at a time, pipelined.
		var cmds []*redis.MapStringIntCmd
		_, err := h.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for start := 0; start < len(channels); start += 500 {
				cmds = append(cmds, p.PubSubNumSub(ctx, channels[start:min(start+500, len(channels))]...))
			}
			return nil
		})
		if err != nil {
			return fail(err)
		}
		for _, cmd := range cmds {
			for ch, n := range cmd.Val() {
				counts[ch] = n
			}
		}
		return counts, nil
	}
	byMaster := map[*redis.Client][]string{}
	for _, ch := range channels {
		m, err := c.MasterForKey(ctx, ch)
		if err != nil {
			return fail(err)
		}
		byMaster[m] = append(byMaster[m], ch)
	}
	for m, chs := range byMaster {
		cmds := make([]*redis.MapStringIntCmd, len(chs))
		_, err := m.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, ch := range chs {
				cmds[i] = p.PubSubShardNumSub(ctx, ch) // one channel: a call may not span slots
			}
			return nil
		})
		if err != nil {
			return fail(err)
		}
		for i, ch := range chs {
			counts[ch] = cmds[i].Val()[ch]
		}
	}
	return counts, nil
}
