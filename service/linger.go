package service

import (
	"net"
	"sync/atomic"
	"time"
)

// linger closes a WebSocket's TCP connection so that the close frame reaches the peer.
//
// A close often comes while the peer is still sending — the rest of a frame over the size
// limit, messages that crossed the close frame. Closing the socket with those bytes unread
// makes the kernel answer with a reset, and a browser whose write fails on that reset
// reports 1006 and drops the close frame it had received (Chromium fails the connection on
// a write error before it reads on). So the connection is closed in two steps: close,
// called by gws right after it wrote the close frame, only shuts the sending side (the
// peer reads the close frame, then EOF) and wakes the read loop; finish, at the end of the
// read loop's goroutine, reads and discards what the peer still sends until EOF — a peer
// that read the close frame answers and closes — and only then closes the socket.
//
// Reading on is bounded by lingerBytes and lingerTimeout, whichever comes first, so that a
// peer that keeps sending, or never closes, holds a parked goroutine for at most
// lingerTimeout and costs at most lingerBytes of reads.
type linger struct {
	conn    net.Conn
	armed   atomic.Bool // the upgrade succeeded and a read loop will call finish
	closing atomic.Bool // the sending side is shut; reads are finish's
}

const (
	// lingerBytes is how much a peer may still send after the close: room for the rest of
	// a frame of a few MB, far over any limit a node is configured with.
	lingerBytes = 4 << 20
	// lingerTimeout is how long a peer has to finish sending and close.
	lingerTimeout = 2 * time.Second
)

// Read is what the frame guard reads from: the socket, until the close. After it, the
// read loop must not wait on the socket again (a callback may have moved the read
// deadline past the wake-up close set), and the bytes are finish's to discard.
func (l *linger) Read(p []byte) (int, error) {
	if l.closing.Load() {
		return 0, net.ErrClosed
	}
	return l.conn.Read(p)
}

// close is the connection's Close (see handshakeConn.Close): before the upgrade it closes
// the socket; after it, it shuts the sending side and wakes the read loop, once.
func (l *linger) close() error {
	if !l.armed.Load() {
		return l.conn.Close()
	}
	if !l.closing.CompareAndSwap(false, true) {
		return nil
	}
	if hc, ok := l.conn.(interface{ CloseWrite() error }); ok {
		_ = hc.CloseWrite()
	}
	// A read the read loop is blocked in returns at once; a later one stops at Read.
	return l.conn.SetReadDeadline(time.Now())
}

// finish ends the connection, once the read loop is done with it: if close shut the
// sending side, it first discards what the peer still sends, within the bounds.
func (l *linger) finish() {
	if l.closing.Load() {
		_ = l.conn.SetReadDeadline(time.Now().Add(lingerTimeout))
		buf := make([]byte, 4096) // only while closing; a few KiB keeps a drain of 4 MiB ~1,000 reads
		for left := lingerBytes; left > 0; {
			n, err := l.conn.Read(buf[:min(len(buf), left)])
			left -= n
			if err != nil { // EOF: the peer closed; or the deadline
				break
			}
		}
	}
	_ = l.conn.Close()
}

// abort closes the socket now, lingering or not: the node's shutdown gave up waiting.
func (l *linger) abort() {
	l.armed.Store(false)
	_ = l.conn.Close()
}
