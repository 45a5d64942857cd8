package service

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/lxzan/gws"

	"github.com/switchboard-dev/switchboard/events"
	"github.com/switchboard-dev/switchboard/subscriptions"
)

func TestDisconnectForMapsEachCauseToItsClose(t *testing.T) {
	for _, tc := range []struct {
		err   error
		code  uint16
		label string
	}{
		{subscriptions.ErrKicked, closeKicked, "kicked"},
		{subscriptions.ErrClosed, closeRestarting, "draining"},
		{fmt.Errorf("%w: subscription not confirmed: %w", subscriptions.ErrUnavailable, context.Canceled), closeRestarting, "draining"},
		{fmt.Errorf("%w: subscription not confirmed: %w", subscriptions.ErrUnavailable, context.DeadlineExceeded), closeTryAgainLater, "redis_unavailable"},
		{fmt.Errorf("%w: read history: broken pipe", subscriptions.ErrUnavailable), closeTryAgainLater, "redis_unavailable"},
		{events.ErrUnavailable, closeTryAgainLater, "redis_unavailable"},
		{subscriptions.ErrLagged, closeTryAgainLater, "lagged"},
		{subscriptions.ErrSlowConsumer, closeTryAgainLater, "slow_consumer"},
		{fmt.Errorf("something unforeseen"), closeInternalError, "server_error"},
	} {
		t.Run(tc.err.Error()+" closes with "+tc.label, func(t *testing.T) {
			d := disconnectFor(tc.err)
			if d.code != tc.code || d.label != tc.label || d.reason == "" {
				t.Fatalf("disconnectFor(%v) = %+v, want code %d label %s", tc.err, d, tc.code, tc.label)
			}
		})
	}
}

// A closed connection takes frames and discards them: it is not a slow consumer.
func TestClosedClientTakesFramesWithoutQueuingThem(t *testing.T) {
	c := &client{}
	c.out.init(new(socketRecorder), func() { t.Error("a drain scheduled for a closed connection") },
		outboxLimits{maxMessages: 1, maxBytes: 10, writeTimeout: time.Second})
	c.out.shut(nil)
	if !c.enqueue([]byte("x")) {
		t.Fatal("enqueue on a closed connection reported a full queue")
	}
	if !c.Deliver(subscriptions.Message{Payload: []byte("y")}) {
		t.Fatal("Deliver on a closed connection reported a slow consumer")
	}
}

// upgradedPipe returns a server-side gws connection over a pipe, and what its peer reads.
func upgradedPipe(t *testing.T) (*gws.Conn, <-chan []byte) {
	t.Helper()
	srv, peer := net.Pipe()
	t.Cleanup(func() { srv.Close(); peer.Close() })
	read := make(chan []byte, 16)
	go func() {
		defer close(read)
		for {
			b := make([]byte, 512)
			n, err := peer.Read(b)
			if n > 0 {
				read <- b[:n]
			}
			if err != nil {
				return
			}
		}
	}()
	r := httptest.NewRequest("GET", "/ws", nil)
	r.Header.Set("Connection", "Upgrade")
	r.Header.Set("Upgrade", "websocket")
	r.Header.Set("Sec-WebSocket-Version", "13")
	r.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	conn, err := gws.NewUpgrader(&gws.BuiltinEventHandler{}, nil).UpgradeFromConn(srv, bufio.NewReader(srv), r)
	if err != nil {
		t.Fatal(err)
	}
	if b := <-read; len(b) == 0 {
		t.Fatal("no upgrade answer")
	}
	return conn, read
}

// close writes the close frame on a goroutine the server's WaitGroup counts, so that
// Serve's shutdown waits for it even after the connection's read loop has ended.
func TestCloseWriterIsCountedUntilItHasWritten(t *testing.T) {
	s := &Server{metrics: newMetrics(NewRegistry()), log: slog.New(slog.DiscardHandler), cfg: Config{MaxQueueMessages: 8, MaxQueueBytes: 1 << 10, WriteTimeout: time.Second}}
	conn, read := upgradedPipe(t)
	c := &client{s: s}
	c.attach(conn)
	s.wg.Add(1)      // the read loop, as register counts it
	c.out.wmu.Lock() // a batch being written: the close frame waits for it
	if !c.close(disconnectDraining) {
		t.Fatal("the first close did not close")
	}
	if c.close(disconnectPanic) {
		t.Fatal("a second close closed again")
	}
	s.wg.Done() // the read loop ends
	waited := make(chan struct{})
	go func() { s.wg.Wait(); close(waited) }()
	select {
	case <-waited:
		t.Fatal("the WaitGroup was done before the close frame was written")
	case <-time.After(50 * time.Millisecond):
	}
	c.out.wmu.Unlock()
	<-waited
	b := <-read
	if len(b) < 4 || b[0] != 0x88 || uint16(b[2])<<8|uint16(b[3]) != closeRestarting {
		t.Fatalf("peer read % x, want a close frame with 1012", b)
	}
	_, _ = io.Copy(io.Discard, conn.NetConn())
}
