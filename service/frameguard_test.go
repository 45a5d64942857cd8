package service

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/lxzan/gws"
)

// wireFrame encodes one client frame with an explicit first byte and length form, so
// that tests can build frames RFC 6455 forbids: form 0 is the shortest, 16 and 64 force
// that extended length, and declared, unless -1, replaces the payload's length.
func wireFrame(b0 byte, masked bool, form int, declared int64, payload []byte) []byte {
	n := uint64(len(payload))
	if declared != -1 {
		n = uint64(declared)
	}
	mask := byte(0)
	if masked {
		mask = 0x80
	}
	out := []byte{b0}
	switch {
	case form == 64 || form == 0 && n > 0xFFFF:
		out = append(out, mask|127)
		out = binary.BigEndian.AppendUint64(out, n)
	case form == 16 || form == 0 && n > 125:
		out = append(out, mask|126)
		out = binary.BigEndian.AppendUint16(out, uint16(n))
	default:
		out = append(out, mask|byte(n))
	}
	if masked {
		out = append(out, 1, 2, 3, 4)
	}
	return append(out, payload...)
}

// frameRecorder is a frameOwner that remembers what it was told.
type frameRecorder struct {
	frames []byte // opcode|0x80 if FIN, one per frame
	failed []*frameViolation
}

func (r *frameRecorder) frameSeen(op byte, fin bool) *frameViolation {
	if fin {
		op |= 0x80
	}
	r.frames = append(r.frames, op)
	return nil
}

func (r *frameRecorder) framesFailed(v *frameViolation) { r.failed = append(r.failed, v) }

// chunkReader returns its data in reads of the sizes cuts gives (cycling, 1–16 bytes), or
// whole when cuts is empty.
type chunkReader struct {
	data []byte
	cuts []byte
	i    int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := len(c.data)
	if len(c.cuts) > 0 {
		n = min(n, int(c.cuts[c.i%len(c.cuts)]%16)+1)
		c.i++
	}
	n = copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

// guardAll reads stream through a frame guard in chunks, as gws's bufio.Reader would.
func guardAll(stream, cuts []byte) (passed []byte, rec *frameRecorder, err error) {
	return guardLimited(stream, cuts, 0)
}

// guardLimited is guardAll through a guard with a message size limit.
func guardLimited(stream, cuts []byte, limit uint64) (passed []byte, rec *frameRecorder, err error) {
	rec = &frameRecorder{}
	g := &frameGuard{r: &chunkReader{data: stream, cuts: cuts}, owner: rec, limit: limit}
	buf := make([]byte, 64)
	for {
		n, e := g.Read(buf)
		passed = append(passed, buf[:n]...)
		if e != nil {
			if errors.Is(e, io.EOF) {
				e = nil
			}
			return passed, rec, e
		}
	}
}

var crashFrame = []byte{0x81, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0x05, 0x01, 0x02, 0x03, 0x04}

func TestFrameGuardRefusesFramesThatBreakRFC6455(t *testing.T) {
	text := wireFrame(0x81, true, 0, -1, []byte("hi"))
	cases := []struct {
		name  string
		frame []byte
		want  *frameViolation
	}{
		{"the crash frame: a 64-bit length with its top bit set", crashFrame, errLengthTopBit},
		{"a 64-bit length of 2^63", wireFrame(0x82, true, 64, -1<<63, nil), errLengthTopBit},
		{"a 16-bit length under 126", wireFrame(0x81, true, 16, -1, []byte("short")), errLengthEncoding},
		{"a 64-bit length under 65536", wireFrame(0x81, true, 64, -1, []byte("short")), errLengthEncoding},
		{"RSV1 without permessage-deflate", wireFrame(0xC1, true, 0, -1, []byte("x")), errRSV},
		{"RSV2", wireFrame(0xA1, true, 0, -1, []byte("x")), errRSV},
		{"RSV3", wireFrame(0x91, true, 0, -1, []byte("x")), errRSV},
		{"reserved data opcode 3", wireFrame(0x83, true, 0, -1, nil), errOpcode},
		{"reserved control opcode 0xB", wireFrame(0x8B, true, 0, -1, nil), errOpcode},
		{"an unmasked text frame", wireFrame(0x81, false, 0, -1, []byte("x")), errUnmasked},
		{"a ping without FIN", wireFrame(0x09, true, 0, -1, nil), errControlFragment},
		{"a ping of 126 bytes", wireFrame(0x89, true, 0, -1, make([]byte, 126)), errControlLength},
		{"a close with a 64-bit length", wireFrame(0x88, true, 64, 2, []byte{3, 232}), errControlLength},
		{"a continuation with no message begun", wireFrame(0x80, true, 0, -1, []byte("x")), errContinuation},
		{"a text frame inside a fragmented message", append(wireFrame(0x01, true, 0, -1, []byte("a")), text...), errInterleaved},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// The offending frame follows a valid one, and is cut at every point, so that
			// the guard must find it across reads and pass on exactly what precedes it.
			stream := append(append([]byte(nil), text...), tc.frame...)
			for cut := 1; cut <= len(stream); cut++ {
				passed, rec, err := guardAll(stream, []byte{byte(cut - 1)})
				if err != tc.want {
					t.Fatalf("cut %d: error %v, want %v", cut, err, tc.want)
				}
				if len(rec.failed) != 1 || rec.failed[0] != tc.want {
					t.Fatalf("cut %d: owner told %v", cut, rec.failed)
				}
				if len(passed) < len(text) || len(passed) >= len(text)+maxClientFrameHeader || !bytes.Equal(passed, stream[:len(passed)]) {
					t.Fatalf("cut %d: passed %d bytes of %d, want the valid frame and no more than a header", cut, len(passed), len(stream))
				}
			}
		})
	}
}

// A message over the limit is refused at the header of the frame that takes it over, so
// that its payload is never read into gws's buffer; what precedes that frame passes.
func TestFrameGuardRefusesMessagesOverTheLimitAtTheirHeader(t *testing.T) {
	const limit = 100
	frame := func(b0 byte, n int) []byte { return wireFrame(b0, true, 0, -1, make([]byte, n)) }
	cases := []struct {
		name   string
		before []byte // passes
		over   []byte // refused with errTooLarge, nil for none
	}{
		{"a text frame one byte over the limit", nil, frame(0x81, limit+1)},
		{"a binary frame declaring 2^40 bytes, its payload not sent", nil, wireFrame(0x82, true, 64, 1<<40, nil)},
		{"fragments that add up to one byte over the limit",
			joinBytes(frame(0x01, 60), frame(0x89, 125), frame(0x00, 30)), frame(0x80, 11)},
		{"a message of exactly the limit, and another", joinBytes(frame(0x81, limit), frame(0x82, limit)), nil},
		{"fragments of exactly the limit, control frames between them not counted",
			joinBytes(frame(0x01, 50), frame(0x8A, 125), frame(0x80, 50), frame(0x81, limit)), nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			stream := joinBytes(tc.before, tc.over)
			for _, cuts := range [][]byte{nil, {0}, {2, 7, 13}} {
				passed, rec, err := guardLimited(stream, cuts, limit)
				if tc.over == nil {
					if err != nil || !bytes.Equal(passed, stream) {
						t.Fatalf("cuts %v: %v, passed %d of %d bytes", cuts, err, len(passed), len(stream))
					}
					continue
				}
				if err != errTooLarge || len(rec.failed) != 1 || rec.failed[0] != errTooLarge {
					t.Fatalf("cuts %v: error %v, owner told %v; want %v", cuts, err, rec.failed, errTooLarge)
				}
				if len(passed) < len(tc.before) || len(passed) >= len(tc.before)+maxClientFrameHeader || !bytes.Equal(passed, stream[:len(passed)]) {
					t.Fatalf("cuts %v: passed %d bytes of %d, want what precedes the frame and no more than a header", cuts, len(passed), len(stream))
				}
			}
		})
	}
	if errTooLarge.code != 1009 || errTooLarge.label != "too_large" {
		t.Fatalf("errTooLarge = %+v", errTooLarge)
	}
}

func TestFrameGuardPassesConformingStreamsWhole(t *testing.T) {
	var stream []byte
	for _, f := range [][]byte{
		wireFrame(0x81, true, 0, -1, []byte(`{"type":"send"}`)),
		wireFrame(0x89, true, 0, -1, []byte("ping")),
		wireFrame(0x01, true, 0, -1, []byte("frag")),
		wireFrame(0x8A, true, 0, -1, make([]byte, 125)), // a pong inside a fragmented message
		wireFrame(0x00, true, 0, -1, make([]byte, 126)),
		wireFrame(0x80, true, 0, -1, make([]byte, 70000)),
		wireFrame(0x82, true, 0, -1, nil),
		wireFrame(0x88, true, 0, -1, []byte{3, 232}),
	} {
		stream = append(stream, f...)
	}
	want := []byte{0x81, 0x89, 0x01, 0x8A, 0x00, 0x80, 0x82, 0x88}
	for _, cuts := range [][]byte{nil, {0}, {1}, {2, 7, 13}, {15}} {
		passed, rec, err := guardAll(stream, cuts)
		if err != nil || !bytes.Equal(passed, stream) || !bytes.Equal(rec.frames, want) {
			t.Fatalf("cuts %v: %v, passed %d of %d bytes, frames %x", cuts, err, len(passed), len(stream), rec.frames)
		}
	}
}

// The ring of verdicts must hold every message the read buffer can hold ahead of gws.
func TestVerdictRingHoldsAReadBufferOfMessages(t *testing.T) {
	smallest := len(wireFrame(0x81, true, 0, -1, nil))
	if need := wsReadBufferSize/smallest + 1; verdictRing < need {
		t.Fatalf("verdictRing %d < %d messages of %d bytes in a %d-byte buffer", verdictRing, need, smallest, wsReadBufferSize)
	}
}

// refParse is the reference the fuzz targets compare the guard with: a straightforward
// parse of a whole client stream. It returns the frames (opcode|0x80 if FIN) whose header
// is whole, and the offset of the first frame that breaks RFC 6455, or -1. A stream that
// stops inside a frame is not a violation, but a rule the bytes present already break is.
func refParse(b []byte) (frames []byte, bad int) {
	open := false
	for off := 0; off < len(b); {
		h := b[off:]
		fin, op := h[0]&0x80 != 0, h[0]&0x0F
		if h[0]&0x70 != 0 || (op > 2 && op < 8) || op > 10 {
			return frames, off
		}
		if len(h) < 2 {
			return frames, -1
		}
		if h[1]&0x80 == 0 {
			return frames, off
		}
		l7 := h[1] & 0x7F
		if op >= 8 && (!fin || l7 > 125) {
			return frames, off
		}
		hl, n := 2, uint64(l7)
		switch l7 {
		case 126:
			hl = 4
		case 127:
			hl = 10
		}
		if len(h) < hl+4 {
			return frames, -1
		}
		switch l7 {
		case 126:
			n = uint64(binary.BigEndian.Uint16(h[2:]))
			if n < 126 {
				return frames, off
			}
		case 127:
			n = binary.BigEndian.Uint64(h[2:])
			if n >= 1<<63 || n < 1<<16 {
				return frames, off
			}
		}
		switch op {
		case 0:
			if !open {
				return frames, off
			}
			open = !fin
		case 1, 2:
			if open {
				return frames, off
			}
			open = !fin
		}
		if fin {
			op |= 0x80
		}
		frames = append(frames, op)
		if uint64(len(h)-hl-4) < n {
			return frames, -1
		}
		off += hl + 4 + int(n)
	}
	return frames, -1
}

// checkGuardAgainstReference runs stream through the guard in the reads cuts gives and
// compares it with refParse.
func checkGuardAgainstReference(t *testing.T, stream, cuts []byte) {
	passed, rec, err := guardAll(stream, cuts)
	frames, bad := refParse(stream)
	if !bytes.Equal(passed, stream[:len(passed)]) {
		t.Fatal("the guard changed the bytes it passed on")
	}
	if !bytes.Equal(rec.frames, frames) {
		t.Fatalf("guard saw frames %x, reference %x", rec.frames, frames)
	}
	if bad < 0 {
		if err != nil || len(rec.failed) != 0 || len(passed) != len(stream) {
			t.Fatalf("a conforming stream: %v (owner told %d), passed %d of %d bytes", err, len(rec.failed), len(passed), len(stream))
		}
		return
	}
	var v *frameViolation
	if !errors.As(err, &v) || v.code != closeProtocolError || len(rec.failed) != 1 || rec.failed[0] != v {
		t.Fatalf("a stream breaking RFC 6455 at %d: error %v, owner told %v", bad, err, rec.failed)
	}
	if len(passed) < bad || len(passed) >= bad+maxClientFrameHeader {
		t.Fatalf("violation at %d: passed %d bytes", bad, len(passed))
	}
}

// FuzzFrameGuardBytes feeds arbitrary client streams, cut into arbitrary reads, to the
// guard: it must never panic, pass on exactly the bytes before a violation, see exactly
// the frames the reference parse sees, and refuse exactly what the reference refuses.
func FuzzFrameGuardBytes(f *testing.F) {
	f.Add(crashFrame, []byte{3})
	f.Add(wireFrame(0x81, true, 0, -1, []byte("hello")), []byte{})
	f.Add(append(wireFrame(0x01, true, 0, -1, []byte("a")), wireFrame(0x80, true, 16, -1, make([]byte, 200))...), []byte{1, 5})
	f.Fuzz(func(t *testing.T, stream, cuts []byte) {
		checkGuardAgainstReference(t, stream, cuts)
	})
}

// FuzzFrameGuardFrames builds streams frame by frame from the fuzzer's bytes, so that
// most are well formed and the rest break one rule at a time: each 4 bytes of program
// give a frame's first byte (FIN, RSV, opcode), its length form (shortest, 16-bit, 64-bit,
// 64-bit with the top bit set), whether it is masked, and its payload length (0–1023).
func FuzzFrameGuardFrames(f *testing.F) {
	f.Add([]byte{0x81, 0, 5, 0}, []byte{})
	f.Add([]byte{0x01, 0, 5, 0, 0x80, 1, 200, 0}, []byte{2})
	f.Add([]byte{0x81, 3, 5, 0}, []byte{0})
	f.Add([]byte{0x89, 0, 10, 0, 0x81, 2, 255, 3, 0xC1, 0x80, 1, 0}, []byte{9, 1})
	f.Fuzz(func(t *testing.T, program, cuts []byte) {
		var stream []byte
		for ; len(program) >= 4 && len(stream) < 1<<16; program = program[4:] {
			b0, form, n := program[0], program[1], int(program[2])|int(program[3]&3)<<8
			if form&0x80 == 0 {
				b0 &^= 0x70 // RSV bits only now and then
			}
			if b0&0x08 != 0 && form&0x10 == 0 {
				n %= 126 // control frames mostly small enough
			}
			masked := form&0x60 != 0x60
			payload := make([]byte, n)
			switch form & 3 {
			case 0:
				stream = append(stream, wireFrame(b0, masked, 0, -1, payload)...)
			case 1:
				stream = append(stream, wireFrame(b0, masked, 16, -1, payload)...)
			case 2:
				stream = append(stream, wireFrame(b0, masked, 64, -1, payload)...)
			case 3:
				stream = append(stream, wireFrame(b0, masked, 64, int64(n)|-1<<63, payload)...)
			}
		}
		checkGuardAgainstReference(t, stream, cuts)
	})
}

// BenchmarkFrameGuard measures the guard on what a busy connection reads: masked text
// frames of 100 bytes, in reads of gws's buffer size.
func BenchmarkFrameGuard(b *testing.B) {
	var stream []byte
	for len(stream) < 1<<20 {
		stream = append(stream, wireFrame(0x81, true, 0, -1, bytes.Repeat([]byte("x"), 100))...)
	}
	src := &loopReader{data: stream}
	g := &frameGuard{r: src}
	buf := make([]byte, wsReadBufferSize)
	b.SetBytes(wsReadBufferSize)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := g.Read(buf); err != nil {
			b.Fatal(err)
		}
	}
}

// loopReader returns its data again and again.
type loopReader struct {
	data []byte
	off  int
}

func (l *loopReader) Read(p []byte) (int, error) {
	n := copy(p, l.data[l.off:])
	l.off = (l.off + n) % len(l.data)
	return n, nil
}

// TestFrameGuardAllocationBudget pins the guard's reads at no allocation: it runs on
// every read of every connection.
func TestFrameGuardAllocationBudget(t *testing.T) {
	var stream []byte
	for len(stream) < 1<<16 {
		stream = append(stream, wireFrame(0x81, true, 0, -1, []byte(`{"type":"send","to":"bob","data":1}`))...)
		stream = append(stream, wireFrame(0x89, true, 0, -1, nil)...)
	}
	rec := &frameRecorder{frames: make([]byte, 0, 1<<16)}
	g := &frameGuard{r: &loopReader{data: stream}, owner: rec}
	buf := make([]byte, wsReadBufferSize)
	reads := 0
	allocs := testing.AllocsPerRun(200, func() {
		rec.frames = rec.frames[:0]
		if _, err := g.Read(buf); err != nil {
			t.Fatal(err)
		}
		reads++
	})
	if reads == 0 || len(rec.frames) == 0 {
		t.Fatal("measured nothing")
	}
	if allocs > 0 {
		t.Fatalf("%.1f allocations per read, want 0", allocs)
	}
}

// gwsRecorder records what gws delivers.
type gwsRecorder struct {
	gws.BuiltinEventHandler
	mu     sync.Mutex
	events []string
	closed chan struct{}
}

func (r *gwsRecorder) OnMessage(_ *gws.Conn, m *gws.Message) {
	defer m.Close()
	r.mu.Lock()
	r.events = append(r.events, fmt.Sprintf("message %d %x", m.Opcode, sha256.Sum256(m.Bytes())))
	r.mu.Unlock()
}

func (r *gwsRecorder) OnPing(_ *gws.Conn, p []byte) {
	r.mu.Lock()
	r.events = append(r.events, fmt.Sprintf("ping %q", p))
	r.mu.Unlock()
}

func (r *gwsRecorder) OnClose(*gws.Conn, error) { close(r.closed) }

// TestFrameGuardAgreesWithGwsOnConformingStreams runs conforming streams through gws
// reading through the guard, as a connection does, and checks that gws delivers exactly
// the messages and pings they were built from: the guard passes them on unchanged and
// refuses none.
func TestFrameGuardAgreesWithGwsOnConformingStreams(t *testing.T) {
	masked := func(b0 byte, form int, payload []byte) []byte {
		f := wireFrame(b0, true, form, -1, payload)
		p := f[len(f)-len(payload):]
		for i := range p {
			p[i] ^= byte(i%4 + 1) // the mask key wireFrame writes: 1 2 3 4
		}
		return f
	}
	big := bytes.Repeat([]byte("0123456789"), 7000)
	stream := joinBytes(
		masked(0x81, 0, []byte(`{"a":1}`)),
		masked(0x01, 0, big[:100]),
		masked(0x89, 0, []byte("p1")),
		masked(0x00, 0, big[100:300]),
		masked(0x80, 0, big[300:70000]),
		masked(0x82, 64, big),
		masked(0x8A, 0, nil),
		masked(0x81, 16, big[:126]),
	)
	want := []string{
		fmt.Sprintf("message 1 %x", sha256.Sum256([]byte(`{"a":1}`))),
		`ping "p1"`,
		fmt.Sprintf("message 1 %x", sha256.Sum256(big[:70000])),
		fmt.Sprintf("message 2 %x", sha256.Sum256(big)),
		fmt.Sprintf("message 1 %x", sha256.Sum256(big[:126])),
	}
	for _, cuts := range [][]byte{nil, {0}, {6, 13, 2}} {
		rec := &gwsRecorder{closed: make(chan struct{})}
		up := gws.NewUpgrader(rec, &gws.ServerOption{ReadBufferSize: wsReadBufferSize})
		server, client := net.Pipe()
		req := httptest.NewRequest("GET", "/ws", nil)
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Upgrade", "websocket")
		req.Header.Set("Sec-WebSocket-Version", "13")
		req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
		guard := &frameGuard{r: server, owner: &frameRecorder{}}
		go func() {
			conn, err := up.UpgradeFromConn(server, bufio.NewReaderSize(guard, wsReadBufferSize), req)
			if err == nil {
				conn.ReadLoop()
			}
		}()
		br := bufio.NewReader(client)
		if resp, err := http.ReadResponse(br, req); err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("upgrade: %v %v", resp, err)
		}
		go func() { _, _ = io.Copy(io.Discard, br) }() // gws's pongs
		src := &chunkReader{data: stream, cuts: cuts}
		buf := make([]byte, 4096)
		for {
			n, err := src.Read(buf)
			if err != nil {
				break
			}
			if _, err := client.Write(buf[:n]); err != nil {
				t.Fatalf("cuts %v: write: %v (gws closed early: it refused something)", cuts, err)
			}
		}
		_ = client.Close()
		<-rec.closed
		rec.mu.Lock()
		got := rec.events
		rec.mu.Unlock()
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("cuts %v: gws delivered\n%v\nwant\n%v", cuts, got, want)
		}
		if guard.err != nil {
			t.Fatalf("cuts %v: the guard refused a conforming stream: %v", cuts, guard.err)
		}
	}
}

func joinBytes(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
