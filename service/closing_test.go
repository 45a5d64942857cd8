package service_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/internal/testutil"
	"github.com/switchboard-dev/switchboard/service"
)

// oversized is a masked text frame of 2 MB, far over the default read limit (64 KiB and
// 4 KiB of room): what a browser sends when a page calls send with a large string.
func oversized() []byte {
	return service.WireFrame(0x81, true, 0, -1, bytes.Repeat([]byte("x"), 2<<20))
}

// closeFrame reads server frames up to the close frame and returns its code and reason.
func (r *rawWS) closeFrame(t *testing.T) (uint16, string) {
	t.Helper()
	for {
		op, p, err := r.frame()
		if err != nil {
			t.Fatalf("reading up to the close frame: %v", err)
		}
		if op == 0x8 {
			if len(p) < 2 {
				t.Fatalf("a close frame without a code: %q", p)
			}
			return binary.BigEndian.Uint16(p), string(p[2:])
		}
	}
}

// Before the server read on after its close, the rest of the frame was still in its
// receive buffer when it closed the socket, so its kernel answered with a reset: the
// client's write of the frame failed (a browser then reports 1006 and drops the close
// frame), and its read after the close frame got "connection reset", not EOF.
func TestAnOversizedFrameGetsIts1009CloseAndThenEOF(t *testing.T) {
	srv, _ := startRedis(t)
	n := startNode(t, onRedis(srv), "a")
	p := startBystander(t, n, n, "bystander", nil)
	c := rawConnect(t, n, "mallory")
	c.welcome(t)
	if _, err := c.conn.Write(oversized()); err != nil {
		t.Errorf("writing the oversized frame: %v (the server reset the connection)", err)
	}
	code, reason := c.closeFrame(t)
	if code != 1009 || reason != "message too large" {
		t.Fatalf("close %d %q, want 1009 %q", code, reason, "message too large")
	}
	if _, _, err := c.frame(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the close frame: %v, want EOF", err)
	}
	if got := closedTotal(t, n, "too_large"); got != 1 {
		t.Fatalf("closed_total{too_large} = %v, want 1", got)
	}
	stillDelivers(t, p)
}

// readLoops counts the node's connections whose goroutine has not ended, lingering ones
// included (the linger runs at the end of the read loop's goroutine).
func readLoops() int { return len(testutil.Goroutines("service.(*client).readLoop")) }

// A peer that keeps sending after the close, or that never closes, holds its connection's
// goroutine at most LingerTimeout, and a flood is cut off after LingerBytes: the node reads
// little more than that and not for the whole time.
func TestAPeerThatKeepsSendingOrNeverClosesIsCutOffWithinTheBound(t *testing.T) {
	srv, _ := startRedis(t)
	n := startNode(t, onRedis(srv), "a")
	p := startBystander(t, n, n, "bystander", nil)
	before := readLoops()
	// The client's and the node's socket buffers hold tens of MB on loopback; a flood
	// that only the time bound stopped would pass hundreds.
	const floodCap = 128 << 20
	garbage := bytes.Repeat([]byte{0xA5}, 64<<10)
	cases := []struct {
		name string
		send func(c *rawWS) (sent int64, err error) // runs until the node cuts the connection off
	}{
		{"a flood of garbage after an oversized header", func(c *rawWS) (int64, error) {
			sent := int64(0)
			hdr := service.WireFrame(0x82, true, 64, 1<<40, nil)
			if _, err := c.conn.Write(hdr); err != nil {
				return 0, err
			}
			for sent < 1<<40 {
				k, err := c.conn.Write(garbage)
				sent += int64(k)
				if err != nil {
					return sent, err
				}
			}
			return sent, nil
		}},
		{"part of an oversized frame, then silence without closing", func(c *rawWS) (int64, error) {
			k, err := c.conn.Write(oversized()[:100<<10])
			return int64(k), err
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := rawConnect(t, n, "mallory")
			c.welcome(t)
			_ = c.conn.SetDeadline(time.Time{}) // only the node may end this
			type result struct {
				sent int64
				err  error
			}
			done := make(chan result, 1)
			go func() {
				sent, err := tc.send(c)
				done <- result{sent, err}
			}()
			if code, reason := c.closeFrame(t); code != 1009 || reason != "message too large" {
				t.Fatalf("close %d %q, want 1009", code, reason)
			}
			// The node's goroutine for the connection ends within the bound, though the
			// client neither stops nor closes.
			testutil.WaitFor(t, service.LingerTimeout+3*time.Second, func() bool { return readLoops() == before },
				"the node to end the connection")
			select {
			case r := <-done:
				if r.sent > floodCap {
					t.Fatalf("the node read on for %d MB, want little over %d MB", r.sent>>20, service.LingerBytes>>20)
				}
				t.Logf("the client sent %d KB after the header (%v)", r.sent>>10, r.err)
			case <-time.After(5 * time.Second):
				t.Fatal("the client's writes still succeed after the node ended the connection")
			}
		})
	}
	stillDelivers(t, p)
}

// A close the node starts off the read loop (here a kick, 4001) reads on too: a client
// that is in the middle of a frame finishes writing it without a reset, then reads the
// close frame and EOF. Before, the first bytes after the close drew a reset and the next
// write failed, as a browser's would, which then reports 1006.
func TestAClientMidFrameWhenKickedFinishesItsWriteAndReadsTheClose(t *testing.T) {
	srv, _ := startRedis(t)
	n := startNode(t, onRedis(srv), "a")
	p := startBystander(t, n, n, "bystander", nil)
	c := rawConnect(t, n, "mallory")
	c.welcome(t)
	frame := service.WireFrame(0x81, true, 0, -1, bytes.Repeat([]byte("y"), 60<<10)) // under the limit
	c.write(t, frame[:1<<10])
	if r := do(t, "DELETE", n.base+"/v1/users/mallory/connections", "", nil); r.status != 200 {
		t.Fatalf("kick: %d %s", r.status, r.body)
	}
	if code, reason := c.closeFrame(t); code != 4001 || reason == "" {
		t.Fatalf("close %d %q, want 4001 with a reason", code, reason)
	}
	for rest := frame[1<<10:]; len(rest) > 0; {
		k := min(len(rest), 4<<10)
		if _, err := c.conn.Write(rest[:k]); err != nil {
			t.Fatalf("writing the rest of the frame after the close, %d bytes left: %v", len(rest), err)
		}
		rest = rest[k:]
	}
	if _, _, err := c.frame(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the close frame: %v, want EOF", err)
	}
	stillDelivers(t, p)
}

// stillDelivers checks that the bystander's messages keep going through after what the
// test did, then stops it: Stop fails the test if one was lost.
func stillDelivers(t *testing.T, p *bystanderProbe) {
	t.Helper()
	seen := p.Delivered.Load()
	testutil.WaitFor(t, 10*time.Second, func() bool { return p.Delivered.Load() >= seen+3 }, "the bystander's next messages")
	p.Stop()
}
