package main

import (
	"errors"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard-dev/switchboard/subscriptions"
)

// sentinelOptions reads --redis-sentinel, "<master name>@<sentinel>,<sentinel>,...", and
// the credentials of the sentinels and of the master: go-redis's failover client asks the
// sentinels for the master, and on a failover reconnects to the one they promote, the
// node's shared Pub/Sub included (its link drop is caught up like any other).
func sentinelOptions(cfg config) (*redis.FailoverOptions, error) {
	name, list, ok := strings.Cut(cfg.RedisSentinel, "@")
	if !ok || !subscriptions.ValidID(name) {
		return nil, errors.New(`must be <master name>@<host:port>,<host:port>,... (the name as in "sentinel monitor")`)
	}
	var addrs []string
	for _, a := range strings.Split(list, ",") {
		if a = strings.TrimSpace(a); a != "" {
			if !strings.Contains(a, ":") {
				return nil, errors.New("a sentinel address needs a port, host:port (26379 by default)")
			}
			addrs = append(addrs, a)
		}
	}
	if len(addrs) == 0 {
		return nil, errors.New("no sentinel address")
	}
	return &redis.FailoverOptions{MasterName: name, SentinelAddrs: addrs,
		SentinelPassword: cfg.RedisSentinelPassword, Password: cfg.RedisPassword}, nil
}
