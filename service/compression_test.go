package service_test

import (
	"bufio"
	"bytes"
	"compress/flate"
	"encoding/binary"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/service"
)

// deflateWS is a WebSocket upgraded by hand, offering permessage-deflate or not, whose
// frames are read with their RSV1 bit and inflated by the standard library: a client
// independent of gws, which is the server's compressor.
type deflateWS struct {
	conn       net.Conn
	br         *bufio.Reader
	negotiated string // the server's Sec-WebSocket-Extensions answer
}

func dialDeflate(t *testing.T, n *node, user string, offer bool) *deflateWS {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(n.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	ext := ""
	if offer { // what browsers send
		ext = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
	}
	_, err = conn.Write([]byte("GET /ws?user=" + user + " HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" + ext + "\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade as %s: %v %v", user, resp, err)
	}
	return &deflateWS{conn: conn, br: br, negotiated: resp.Header.Get("Sec-WebSocket-Extensions")}
}

// frame reads one whole server frame; compressed reports its RSV1 bit, and payload is
// inflated when it is set.
func (d *deflateWS) frame(t *testing.T) (op byte, compressed bool, payload []byte) {
	t.Helper()
	var h [2]byte
	if _, err := io.ReadFull(d.br, h[:]); err != nil {
		t.Fatalf("read frame: %v", err)
	}
	if h[0]&0x80 == 0 {
		t.Fatalf("a fragmented server frame %#x: not expected here", h[0])
	}
	n := uint64(h[1] & 0x7F)
	switch n {
	case 126:
		var b [2]byte
		_, _ = io.ReadFull(d.br, b[:])
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		_, _ = io.ReadFull(d.br, b[:])
		n = binary.BigEndian.Uint64(b[:])
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(d.br, payload); err != nil {
		t.Fatalf("read payload: %v", err)
	}
	compressed = h[0]&0x40 != 0
	if compressed {
		// RFC 7692 §7.2.2: append the empty stored block the sender removed, then inflate.
		r := flate.NewReader(io.MultiReader(bytes.NewReader(payload), bytes.NewReader([]byte{0, 0, 0xff, 0xff})))
		var out bytes.Buffer
		_, err := io.Copy(&out, r)
		if err != nil && err != io.ErrUnexpectedEOF { // the stream has no final block
			t.Fatalf("inflate a compressed frame: %v", err)
		}
		payload = out.Bytes()
	}
	return h[0] & 0x0F, compressed, payload
}

// next reads text frames until one of type typ (failing on a close), and returns it whole.
func (d *deflateWS) next(t *testing.T, typ string) (compressed bool, f map[string]any) {
	t.Helper()
	for {
		op, comp, p := d.frame(t)
		if op == 0x8 {
			t.Fatalf("closed waiting for %s: %q", typ, p)
		}
		if op != 0x1 {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(p, &m); err != nil {
			t.Fatalf("a text frame that is not JSON (compressed %v): %q", comp, p)
		}
		if m["type"] == typ {
			return comp, m
		}
	}
}

// deflated compresses p as one permessage-deflate message (without its final 4 bytes).
func deflated(t *testing.T, p []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	w, _ := flate.NewWriter(&b, flate.BestSpeed)
	_, _ = w.Write(p)
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte{0, 0, 0xff, 0xff})
}

// clientFrame is a masked client frame of payload: WireFrame writes the mask key 1 2 3 4
// but leaves the payload as it is, so it is masked here.
func clientFrame(b0 byte, payload []byte) []byte {
	masked := make([]byte, len(payload))
	for i, c := range payload {
		masked[i] = c ^ byte(i%4+1)
	}
	return service.WireFrame(b0, true, 0, -1, masked)
}

func withCompression(o *nodeOptions) { o.service.Compression = true }

func TestCompressionNegotiatedCompressesLargeMessagesBothWays(t *testing.T) {
	srv, _ := startRedis(t)
	n := startNode(t, onRedis(srv), "a", withCompression)
	c := dialDeflate(t, n, "alice", true)
	if !strings.HasPrefix(c.negotiated, "permessage-deflate") {
		t.Fatalf("Sec-WebSocket-Extensions answer %q, want permessage-deflate", c.negotiated)
	}
	c.next(t, "welcome")

	big := strings.Repeat("the quick brown fox jumps over the lazy dog ", 100) // 4,400 bytes
	sendDM(t, n, "alice", `"`+big+`"`)
	comp, m := c.next(t, "message")
	if !comp || m["data"] != big {
		t.Fatalf("a 4 KB message: compressed %v, data intact %v", comp, m["data"] == big)
	}
	sendDM(t, n, "alice", `"small"`)
	if comp, m := c.next(t, "message"); comp || m["data"] != "small" {
		t.Fatalf("a small message: compressed %v (below gws's 512-byte threshold it is sent as is), data %v", comp, m["data"])
	}

	// A compressed message from the client is inflated and handled like any other.
	send := []byte(`{"type":"send","to":"bob","data":"` + big + `"}`)
	c.write(t, clientFrame(0xC1, deflated(t, send)))
	if _, ack := c.next(t, "ack"); ack["code"] != nil {
		t.Fatalf("the compressed send was answered %v", ack)
	}
	// What bob was sent is the inflated text, whole.
	r := do(t, "GET", n.base+"/v1/users/bob/messages", "", nil)
	var hist struct{ Messages []struct{ Data any } }
	if err := json.Unmarshal(r.body, &hist); err != nil || len(hist.Messages) != 1 || hist.Messages[0].Data != big {
		t.Fatalf("bob's history after the compressed send: %s (%v)", r.body, err)
	}
}

func TestCompressionNotOfferedOrOffSendsPlainFrames(t *testing.T) {
	srv, _ := startRedis(t)
	on := startNode(t, onRedis(srv), "on", withCompression)
	off := startNode(t, onRedis(srv), "off")
	big := strings.Repeat("x", 4096)
	for _, tc := range []struct {
		name  string
		n     *node
		offer bool
	}{
		{"compression on, the client does not offer it", on, false},
		{"compression off, the client offers it", off, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			user := "u-" + tc.n.name
			c := dialDeflate(t, tc.n, user, tc.offer)
			if c.negotiated != "" {
				t.Fatalf("Sec-WebSocket-Extensions answer %q, want none", c.negotiated)
			}
			c.next(t, "welcome")
			sendDM(t, tc.n, user, `"`+big+`"`)
			if comp, m := c.next(t, "message"); comp || m["data"] != big {
				t.Fatalf("a 4 KB message: compressed %v, data intact %v", comp, m["data"] == big)
			}
			// Without the extension, RSV1 is a protocol error.
			c.write(t, service.WireFrame(0xC1, true, 0, -1, deflated(t, []byte(`{"type":"ping"}`))))
			if code := c.closeCode(t); code != 1002 {
				t.Fatalf("RSV1 without the extension: close %d, want 1002", code)
			}
		})
	}
}

// With the extension, RSV1 may start a data message only (RFC 7692 §6).
func TestCompressionRefusesRSV1OnControlAndContinuationFrames(t *testing.T) {
	srv, _ := startRedis(t)
	n := startNode(t, onRedis(srv), "a", withCompression)
	for _, tc := range []struct {
		name   string
		frames [][]byte
	}{
		{"a ping with RSV1", [][]byte{service.WireFrame(0xC9, true, 0, -1, nil)}},
		{"a continuation frame with RSV1", [][]byte{
			service.WireFrame(0x41, true, 0, -1, deflated(t, []byte(`{"type":`))),
			service.WireFrame(0xC0, true, 0, -1, []byte(`"x"}`)),
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialDeflate(t, n, "carol", true)
			c.next(t, "welcome")
			for _, f := range tc.frames {
				c.write(t, f)
			}
			if code := c.closeCode(t); code != 1002 {
				t.Fatalf("close %d, want 1002", code)
			}
		})
	}
}

// closeCode reads frames until the server's close frame and returns its code (0: the
// connection ended without one).
func (d *deflateWS) closeCode(t *testing.T) uint16 {
	t.Helper()
	for {
		var h [2]byte
		if _, err := io.ReadFull(d.br, h[:]); err != nil {
			return 0
		}
		n := uint64(h[1] & 0x7F)
		switch n {
		case 126:
			var b [2]byte
			_, _ = io.ReadFull(d.br, b[:])
			n = uint64(binary.BigEndian.Uint16(b[:]))
		case 127:
			var b [8]byte
			_, _ = io.ReadFull(d.br, b[:])
			n = binary.BigEndian.Uint64(b[:])
		}
		p := make([]byte, n)
		if _, err := io.ReadFull(d.br, p); err != nil {
			return 0
		}
		if h[0]&0x0F == 0x8 && len(p) >= 2 {
			return binary.BigEndian.Uint16(p)
		}
	}
}

func (d *deflateWS) write(t *testing.T, frame []byte) {
	t.Helper()
	if _, err := d.conn.Write(frame); err != nil {
		t.Fatalf("write: %v", err)
	}
}
