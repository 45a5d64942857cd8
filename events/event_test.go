package events

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestEventJSON(t *testing.T) {
	at := time.Date(2025, 1, 2, 3, 4, 5, 678_912_000, time.FixedZone("CET", 3600))
	tests := []struct {
		name string
		e    Event
		want string
	}{
		{"user.online carries only the common fields",
			Event{ID: "i", Type: UserOnline, User: "bob", Node: "n1", Time: at, Room: "ignored", Data: json.RawMessage(`1`)},
			`{"id":"i","type":"user.online","user":"bob","node":"n1","time":"2025-01-02T02:04:05.678Z"}`},
		{"user.offline carries its reason when inferred",
			Event{ID: "i", Type: UserOffline, User: "bob", Node: "n1", Time: at, Reason: ReasonNodeGone},
			`{"id":"i","type":"user.offline","user":"bob","node":"n1","time":"2025-01-02T02:04:05.678Z","reason":"node_gone"}`},
		{"room.joined carries room and by",
			Event{ID: "i", Type: RoomJoined, User: "bob", Node: "n1", Time: at, Room: "lobby", By: ByAPI},
			`{"id":"i","type":"room.joined","user":"bob","node":"n1","time":"2025-01-02T02:04:05.678Z","room":"lobby","by":"api"}`},
		{"client.event carries name and data, compacted",
			Event{ID: "i", Type: ClientEvent, User: "bob", Node: "n1", Time: at, Name: "order.paid", Data: json.RawMessage(`{ "order" : 42 }`)},
			`{"id":"i","type":"client.event","user":"bob","node":"n1","time":"2025-01-02T02:04:05.678Z","name":"order.paid","data":{"order":42}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := json.Marshal(tt.e)
			if err != nil || string(b) != tt.want {
				t.Fatalf("got %s, %v\nwant %s", b, err, tt.want)
			}
			var back Event
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatal(err)
			}
			if again, _ := json.Marshal(back); string(again) != tt.want {
				t.Errorf("round trip gave %s", again)
			}
		})
	}
}

func TestEmitRefusesMalformedEvents(t *testing.T) {
	// Validation happens before Redis is touched: nothing listens on this address.
	rdb := redis.NewClient(&redis.Options{Addr: freeAddr(t), MaxRetries: -1})
	defer rdb.Close()
	q, err := New(rdb, Config{URL: "http://127.0.0.1:1/hook", Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("a", 129)
	tests := []struct {
		name string
		e    Event
	}{
		{"an unknown type", Event{Type: "user.bored", User: "bob"}},
		{"no user", Event{Type: UserOnline}},
		{"a user id outside the pattern", Event{Type: UserOnline, User: "bob smith"}},
		{"a user id over 128 bytes", Event{Type: UserOnline, User: long}},
		{"a node id with a slash", Event{Type: UserOnline, User: "bob", Node: "n/1"}},
		{"a room event without a room", Event{Type: RoomJoined, User: "bob", By: ByClient}},
		{"a room event with a bad by", Event{Type: RoomLeft, User: "bob", Room: "lobby", By: "admin"}},
		{"a client event without a name", Event{Type: ClientEvent, User: "bob", Data: json.RawMessage(`1`)}},
		{"a client event with a bad name", Event{Type: ClientEvent, User: "bob", Name: "a b", Data: json.RawMessage(`1`)}},
		{"a client event without data", Event{Type: ClientEvent, User: "bob", Name: "x"}},
		{"a client event with data that is not JSON", Event{Type: ClientEvent, User: "bob", Name: "x", Data: json.RawMessage(`{`)}},
	}
	for _, tt := range tests {
		t.Run("refuses "+tt.name, func(t *testing.T) {
			if err := q.Emit(context.Background(), tt.e); !errors.Is(err, ErrInvalidEvent) {
				t.Errorf("Emit = %v, want ErrInvalidEvent", err)
			}
		})
	}
	t.Run("reports an unreachable Redis as unavailable", func(t *testing.T) {
		if err := q.Emit(context.Background(), Event{Type: UserOnline, User: "bob"}); !errors.Is(err, ErrUnavailable) {
			t.Errorf("Emit = %v, want ErrUnavailable", err)
		}
	})
}

func TestNewRefusesUnsafeConfigurations(t *testing.T) {
	retrying := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer retrying.Close()
	noRetries := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	defer noRetries.Close()
	tests := []struct {
		name string
		rdb  *redis.Client
		cfg  Config
	}{
		{"a client that retries", retrying, Config{}},
		{"a node id outside the pattern", noRetries, Config{Node: "my node"}},
		{"a webhook URL without a host", noRetries, Config{URL: "http:///hook"}},
		{"a webhook URL that is not http", noRetries, Config{URL: "ftp://example.com/"}},
	}
	for _, tt := range tests {
		t.Run("refuses "+tt.name, func(t *testing.T) {
			if _, err := New(tt.rdb, tt.cfg); err == nil {
				t.Error("New accepted it")
			}
		})
	}
}

func TestShardOfAUserIsItsSubscriptionsBucketModShards(t *testing.T) {
	k := newKeys("sb", 16)
	for _, u := range users(1000) {
		if got, want := k.shard(u), int(fnv32a(u)%128)%16; got != want {
			t.Fatalf("%s: shard %d, bucket mod 16 %d", u, got, want)
		}
	}
}
