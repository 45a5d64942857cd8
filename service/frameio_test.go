package service

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"testing"
)

// readServerFrame parses one unmasked frame the way a client does.
func readServerFrame(t *testing.T, r io.Reader) (fin bool, opcode byte, payload []byte) {
	t.Helper()
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		t.Fatalf("reading a frame header: %v", err)
	}
	if h[1]&0x80 != 0 {
		t.Fatal("a server frame is masked")
	}
	n := uint64(h[1] & 0x7F)
	switch n {
	case 126:
		var b [2]byte
		_, _ = io.ReadFull(r, b[:])
		n = uint64(binary.BigEndian.Uint16(b[:]))
		if n < 126 {
			t.Fatalf("length %d in the 16-bit form (must use the shortest)", n)
		}
	case 127:
		var b [8]byte
		_, _ = io.ReadFull(r, b[:])
		n = binary.BigEndian.Uint64(b[:])
		if n <= 0xFFFF {
			t.Fatalf("length %d in the 64-bit form (must use the shortest)", n)
		}
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		t.Fatalf("reading a payload of %d bytes: %v", n, err)
	}
	return h[0]&0x80 != 0, h[0] & 0x0F, payload
}

func TestWriteTextFramesWritesEachFrameWhole(t *testing.T) {
	// Lengths at every boundary of the length encoding.
	sizes := []int{0, 1, 125, 126, 127, 0xFFFF, 0x10000, 70000}
	var frames [][]byte
	for i, n := range sizes {
		frames = append(frames, bytes.Repeat([]byte{byte('a' + i)}, n))
	}
	client, server := net.Pipe()
	defer client.Close()
	done := make(chan error, 1)
	go func() { done <- writeTextFrames(server, frames) }()
	for i, want := range frames {
		fin, op, got := readServerFrame(t, client)
		if !fin || op != 0x1 {
			t.Fatalf("frame %d: fin %v opcode %#x, want a final text frame", i, fin, op)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("frame %d: %d bytes, want %d", i, len(got), len(want))
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestWriteTextFramesReportsAWriteError(t *testing.T) {
	client, server := net.Pipe()
	client.Close()
	if err := writeTextFrames(server, [][]byte{[]byte("x")}); err == nil {
		t.Fatal("a write to a closed pipe succeeded")
	}
}

func BenchmarkWriteTextFrames(b *testing.B) {
	conn := discardConn(b)
	frame := bytes.Repeat([]byte("x"), 150)
	for _, n := range []int{1, 4, 16} {
		frames := make([][]byte, n)
		for i := range frames {
			frames[i] = frame
		}
		b.Run(fmt.Sprintf("frames=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := writeTextFrames(conn, frames); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/frame")
		})
	}
}

// TestWriteTextFramesAllocationBudget pins the allocations of a connection's write: the
// headers and buffers are pooled, the payloads written where they are.
func TestWriteTextFramesAllocationBudget(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's sync.Pool drops items; scripts/test runs this test without it")
	}
	conn := discardConn(t)
	frames := [][]byte{[]byte(`{"n":1}`), []byte(`{"n":2}`), []byte(`{"n":3}`)}
	// One: net.Buffers escapes into the io.Writer it is written to.
	if got := testing.AllocsPerRun(200, func() { _ = writeTextFrames(conn, frames) }); got > 1 {
		t.Fatalf("%.1f allocations per write of 3 frames, budget 1", got)
	}
}

// discardConn returns the client end of a real loopback TCP connection whose server end
// reads everything and throws it away.
func discardConn(tb testing.TB) net.Conn {
	tb.Helper()
	client, server := tcpPair(tb)
	go func() { _, _ = io.Copy(io.Discard, server) }()
	return client
}
