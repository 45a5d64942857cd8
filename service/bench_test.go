package service_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/internal/testutil"
	"github.com/switchboard-dev/switchboard/internal/wsclient"
)

// BenchmarkDirectMessageOverHTTP posts DMs to 100 connected users from concurrent HTTP
// clients and waits for every delivery over the WebSockets: the whole path of a DM, HTTP
// handler, delivery script, Pub/Sub dispatch and WebSocket write, on one node.
func BenchmarkDirectMessageOverHTTP(b *testing.B) {
	srv, _ := startRedis(b)
	n := startNode(b, onRedis(srv), "a")
	const users = 100
	var delivered atomic.Int64
	for i := range users {
		c, err := wsclient.Dial(n.wsURL("user=u"+strconv.Itoa(i)), wsclient.Options{Buffer: 1024})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(c.Close)
		if f, err := c.NextWithin(10 * time.Second); err != nil || f.Type != "welcome" {
			b.Fatal(f, err)
		}
		go func() {
			for {
				if _, err := c.NextWithin(time.Minute); err != nil {
					return
				}
				delivered.Add(1)
			}
		}()
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	body := []byte(`{"text":"hello, this is a direct message of a typical size"}`)
	var seq atomic.Int64
	b.SetParallelism(8)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			u := "u" + strconv.FormatInt(seq.Add(1)%users, 10)
			res, err := client.Post(n.base+"/v1/users/"+u+"/messages", "application/json", bytes.NewReader(body))
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != http.StatusAccepted {
				b.Error(res.Status)
				return
			}
		}
	})
	testutil.Eventually(b, 30*time.Second, func() error {
		if got := delivered.Load(); got < int64(b.N) {
			return fmt.Errorf("delivered %d of %d", got, b.N)
		}
		return nil
	})
	b.StopTimer()
	if got := delivered.Load(); got != int64(b.N) {
		b.Fatalf("delivered %d of %d", got, b.N)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "DMs/s")
}
