package service

import (
	"net"
	"sync"
	"time"
)

// handshakeConn holds the first thing written on a new WebSocket connection — gws's
// "101 Switching Protocols" — until the next write, so that the answer and the welcome
// frame (or the close frame of a refusal) leave in one system call: in a connect storm the
// answer's own write was one of the three or four a connection costs.
//
// Only that first flush takes the lock around the socket write, so that nothing can
// overtake the held answer; later writes go straight to the socket.
type handshakeConn struct {
	net.Conn
	// sock closes the connection once it is upgraded (see linger); nil: Close closes it.
	sock *linger

	mu      sync.Mutex
	held    bool   // the first write has been taken
	pending []byte // the held bytes, until they are flushed
}

// Write holds the first write and sends it ahead of the second.
func (h *handshakeConn) Write(b []byte) (int, error) {
	h.mu.Lock()
	if !h.held {
		h.held = true
		h.pending = append([]byte(nil), b...)
		h.mu.Unlock()
		return len(b), nil
	}
	if h.pending == nil {
		h.mu.Unlock()
		return h.Conn.Write(b)
	}
	defer h.mu.Unlock()
	held := len(h.pending)
	bufs := net.Buffers{h.pending, b}
	h.pending = nil
	n, err := bufs.WriteTo(h.Conn)
	return min(len(b), max(0, int(n)-held)), err
}

// writeBuffers writes bufs with one writev, the held bytes first if there are any.
func (h *handshakeConn) writeBuffers(bufs net.Buffers) error {
	h.mu.Lock()
	h.held = true
	if h.pending == nil {
		h.mu.Unlock()
		_, err := bufs.WriteTo(h.Conn)
		return err
	}
	defer h.mu.Unlock()
	all := append(net.Buffers{h.pending}, bufs...)
	h.pending = nil
	_, err := all.WriteTo(h.Conn)
	return err
}

// handshakeFlushTimeout bounds the flush of a held answer when the connection closes.
const handshakeFlushTimeout = time.Second

// Close sends what is still held (an upgrade refused by gws writes its 400 and closes),
// then closes the connection: gws calls it right after writing a close frame.
func (h *handshakeConn) Close() error {
	h.mu.Lock()
	p := h.pending
	h.pending, h.held = nil, true
	if p != nil {
		_ = h.Conn.SetWriteDeadline(time.Now().Add(handshakeFlushTimeout))
		_, _ = h.Conn.Write(p)
	}
	h.mu.Unlock()
	if h.sock != nil {
		return h.sock.close()
	}
	return h.Conn.Close()
}
