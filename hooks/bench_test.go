package hooks

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/events"
)

// benchBackend answers every request with body after checking its signature, as a real
// backend does; it keeps nothing, so it can serve b.N requests.
func benchBackend(tb testing.TB, body string) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		payload, err := io.ReadAll(r.Body)
		if err == nil {
			err = events.Verify(testSecret, r.Header, payload, time.Now(), time.Minute)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		_, _ = io.WriteString(w, body)
	}))
	tb.Cleanup(srv.Close)
	return srv.URL + "/hook"
}

func benchClient(tb testing.TB, cfg Config) *Client {
	cfg.Secret = testSecret
	cfg.Logger = slog.New(slog.DiscardHandler)
	c, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(c.Close)
	return c
}

func TestAuthorizeCacheHitAllocatesNothing(t *testing.T) {
	c := benchClient(t, Config{AuthorizeURL: benchBackend(t, `{"allow":true,"cache_s":3600}`)})
	if allow, err := c.Authorize(t.Context(), joinLobby); !allow || err != nil {
		t.Fatalf("Authorize = %v, %v", allow, err)
	}
	ctx := t.Context()
	allocs := testing.AllocsPerRun(1000, func() {
		if allow, err := c.Authorize(ctx, joinLobby); !allow || err != nil {
			t.Fatalf("Authorize = %v, %v", allow, err)
		}
	})
	if allocs != 0 {
		t.Errorf("a cache hit allocates %v times, want 0", allocs)
	}
	c.mu.Lock()
	held := c.cache.len()
	c.mu.Unlock()
	if held != 1 {
		t.Fatalf("the cache holds %d answers: the hits measured were not hits", held)
	}
}

func BenchmarkAuthorizeCacheHit(b *testing.B) {
	c := benchClient(b, Config{AuthorizeURL: benchBackend(b, `{"allow":true,"cache_s":3600}`)})
	ctx := b.Context()
	if _, err := c.Authorize(ctx, joinLobby); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if allow, err := c.Authorize(ctx, joinLobby); !allow || err != nil {
			b.Fatal(allow, err)
		}
	}
}

func BenchmarkAuthorizeCacheHitParallel(b *testing.B) {
	c := benchClient(b, Config{AuthorizeURL: benchBackend(b, `{"allow":true,"cache_s":3600}`)})
	ctx := b.Context()
	if _, err := c.Authorize(ctx, joinLobby); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if allow, err := c.Authorize(ctx, joinLobby); !allow || err != nil {
				b.Error(allow, err)
				return
			}
		}
	})
}

// BenchmarkAuthorizeCall is one uncached call at a time to a local backend.
func BenchmarkAuthorizeCall(b *testing.B) {
	c := benchClient(b, Config{AuthorizeURL: benchBackend(b, `{"allow":true}`)})
	ctx := b.Context()
	b.ReportAllocs()
	for b.Loop() {
		if allow, err := c.Authorize(ctx, joinLobby); !allow || err != nil {
			b.Fatal(allow, err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
}

// BenchmarkRPCParallel is many concurrent calls to a local backend that answers at once:
// the node's rpc throughput, backend included (on the same cores).
func BenchmarkRPCParallel(b *testing.B) {
	c := benchClient(b, Config{RPCURL: benchBackend(b, `{"order":42}`)})
	ctx := b.Context()
	data := json.RawMessage(`{"id":7}`)
	b.ReportAllocs()
	b.SetParallelism(8) // 16 goroutines on 2 cores: calls wait on the network, not the CPU alone
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.RPC(ctx, RPCRequest{User: "alice", Method: "orders.get", Data: data}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
}
