package service

import (
	"net"
	"sync"
	"syscall"
	"time"
)

// handshakeConn holds the first thing written on a new WebSocket connection — gws's
// "101 Switching Protocols" — until the next write, so that the answer and the welcome
// frame (or the close frame of a refusal) leave in one system call: in a connect storm the
// answer's own write was one of the three or four a connection costs.
//
// It also keeps what a write without waiting (tryWriteBuffers) left over, to go out ahead
// of the next write. So every write holds its lock across the socket write: nothing may
// overtake bytes it holds.
type handshakeConn struct {
	net.Conn
	// sock closes the connection once it is upgraded (see linger); nil: Close closes it.
	sock *linger

	// raw writes to the socket without waiting (tryWriteBuffers); nil when the socket
	// offers no raw access (a test's pipe), and then every write waits.
	raw syscall.RawConn

	mu      sync.Mutex
	held    bool   // the first write has been taken
	pending []byte // the held answer, or the rest of a write without waiting, until flushed
}

// newHandshakeConn wraps an accepted connection.
func newHandshakeConn(conn net.Conn, sock *linger) *handshakeConn {
	h := &handshakeConn{Conn: conn, sock: sock}
	if sc, ok := conn.(syscall.Conn); ok {
		h.raw, _ = sc.SyscallConn()
	}
	return h
}

// Write holds the first write and sends it ahead of the second.
func (h *handshakeConn) Write(b []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.held {
		h.held = true
		h.pending = append([]byte(nil), b...)
		return len(b), nil
	}
	if h.pending == nil {
		return h.Conn.Write(b)
	}
	held := len(h.pending)
	bufs := net.Buffers{h.pending, b}
	h.pending = nil
	n, err := bufs.WriteTo(h.Conn)
	return min(len(b), max(0, int(n)-held)), err
}

// writeBuffers writes bufs with one writev, the held bytes first if there are any.
func (h *handshakeConn) writeBuffers(bufs net.Buffers) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.held = true
	if h.pending == nil {
		_, err := bufs.WriteTo(h.Conn)
		return err
	}
	all := append(net.Buffers{h.pending}, bufs...)
	h.pending = nil
	_, err := all.WriteTo(h.Conn)
	return err
}

// handshakeFlushTimeout bounds the flush of a held answer when the connection closes.
const handshakeFlushTimeout = time.Second

// Close sends what is still held (an upgrade refused by gws writes its 400 and closes),
// then closes the connection: gws calls it right after writing a close frame.
// A write under way (stuck on a client that does not read) holds the lock: then Close does
// not wait for it, and what is held goes nowhere.
func (h *handshakeConn) Close() error {
	if h.mu.TryLock() {
		p := h.pending
		h.pending, h.held = nil, true
		if p != nil {
			_ = h.Conn.SetWriteDeadline(time.Now().Add(handshakeFlushTimeout))
			_, _ = h.Conn.Write(p)
		}
		h.mu.Unlock()
	}
	if h.sock != nil {
		return h.sock.close()
	}
	return h.Conn.Close()
}

// tryResult is what a write without waiting did.
type tryResult uint8

const (
	tryRefused tryResult = iota // nothing written, nothing kept: write it the waiting way
	tryWritten                  // all of it went out
	tryKept                     // part went out; the rest is kept, and a waiting write must flush it
)

// maxIovecs is the most buffers one writev takes (Linux's IOV_MAX).
const maxIovecs = 1024

// tryWriteBuffers writes bufs as far as the socket takes them now, never waiting on it
// (see writeQueue). What it could not write is kept to go out ahead of the next write
// (tryKept): the caller must then make one, writeBuffers with nothing more if need be. It
// refuses, writing and keeping nothing, when it cannot try now: another write holds the
// socket, bytes are held already, the socket took nothing (its buffer is full, or its
// write deadline passed), or it offers no raw access.
func (h *handshakeConn) tryWriteBuffers(bufs [][]byte) tryResult {
	if h.raw == nil || len(bufs) > maxIovecs || !h.mu.TryLock() {
		return tryRefused
	}
	defer h.mu.Unlock()
	if !h.held || h.pending != nil {
		return tryRefused
	}
	n := 0
	err := h.raw.Write(func(fd uintptr) bool {
		n = writevNow(fd, bufs)
		return true // done either way: waiting is for the connection's own write job
	})
	if err != nil || n <= 0 {
		return tryRefused
	}
	for i, b := range bufs {
		if n < len(b) {
			rest := make([]byte, 0, len(b)-n)
			rest = append(rest, b[n:]...)
			for _, b := range bufs[i+1:] {
				rest = append(rest, b...)
			}
			h.pending = rest
			return tryKept
		}
		n -= len(b)
	}
	return tryWritten
}
