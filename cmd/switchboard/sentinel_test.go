package main

import (
	"context"
	"io"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/internal/redistest"
)

func TestSentinelOptions(t *testing.T) {
	o, err := sentinelOptions(config{RedisSentinel: "sb@s1:26379, s2:26380,", RedisSentinelPassword: "sp", RedisPassword: "mp"})
	if err != nil || o.MasterName != "sb" || !reflect.DeepEqual(o.SentinelAddrs, []string{"s1:26379", "s2:26380"}) ||
		o.SentinelPassword != "sp" || o.Password != "mp" {
		t.Fatalf("got %+v, %v", o, err)
	}
	for _, bad := range []string{"s1:26379", "@s1:26379", "sb@", "sb@s1", "b a d@s1:26379"} {
		if _, err := sentinelOptions(config{RedisSentinel: bad}); err == nil {
			t.Errorf("%q was accepted", bad)
		}
	}
}

// TestConnectRedisThroughSentinels: the client --redis-sentinel builds reaches the master
// the sentinels name, and writes there.
func TestConnectRedisThroughSentinels(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a master and three sentinels")
	}
	master := redistest.Start(t)
	ss := redistest.StartSentinels(t, "sb", master, 3)
	var addrs []string
	for _, s := range ss {
		addrs = append(addrs, s.Addr())
	}
	cfg := config{RedisSentinel: "sb@" + strings.Join(addrs, ","), NodeID: "n1"}
	rdb, desc, closeEmbedded, err := connectRedis(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer closeEmbedded()
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := rdb.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("%s: %v", desc, err)
	}
	if v, err := master.Client(t).Get(ctx, "k").Result(); err != nil || v != "v" {
		t.Fatalf("the master has %q, %v", v, err)
	}
}
