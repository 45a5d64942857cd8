package service

import (
	"encoding/binary"
	"io"
	"net"
	"sync"
)

// frameWriter holds what one writev of WebSocket frames needs, reused across writes.
type frameWriter struct {
	headers []byte
	bufs    net.Buffers
}

var frameWriters = sync.Pool{New: func() any { return new(frameWriter) }}

// writeTextFrames writes frames as unmasked, uncompressed WebSocket text frames (what a
// server sends; a connection that negotiated compression writes through compressedWriter
// instead) in one writev: the headers in one
// small buffer, the payloads as they are, not copied. Each Write on a socket is whole
// (Go's netFD holds its write lock for it), so frames never interleave with the control
// frames gws writes on the same socket.
//
// Every frame must be valid UTF-8, as a text frame must: what the server encodes is, what
// clients send is checked by gws, and what comes from Redis is checked once per message by
// subscriptions (decodeMessage, entryMessage).
func writeTextFrames(w io.Writer, frames [][]byte) error {
	fw := framesFor(frames)
	defer fw.release()
	bufs := fw.bufs // WriteTo consumes the slice it is called on
	if hc, ok := w.(*handshakeConn); ok {
		return hc.writeBuffers(bufs)
	}
	_, err := bufs.WriteTo(w)
	return err
}

// tryWriteTextFrames is writeTextFrames without waiting on the socket (see
// handshakeConn.tryWriteBuffers).
func tryWriteTextFrames(hc *handshakeConn, frames [][]byte) tryResult {
	fw := framesFor(frames)
	defer fw.release()
	return hc.tryWriteBuffers(fw.bufs)
}

// framesFor returns a frameWriter holding frames' headers and payloads, in order, for one
// writev; release gives it back.
func framesFor(frames [][]byte) *frameWriter {
	fw := frameWriters.Get().(*frameWriter)
	// Room for the longest header of every frame up front, so that appending never moves
	// the headers the buffers point into.
	if cap(fw.headers) < maxFrameHeader*len(frames) {
		fw.headers = make([]byte, 0, maxFrameHeader*len(frames))
	}
	for _, f := range frames {
		at := len(fw.headers)
		fw.headers = appendTextHeader(fw.headers, len(f))
		fw.bufs = append(fw.bufs, fw.headers[at:], f)
	}
	return fw
}

func (fw *frameWriter) release() {
	if cap(fw.bufs) > 4096 { // a long replay's batch: do not keep its arrays around
		return
	}
	clear(fw.bufs[:cap(fw.bufs)])
	fw.headers, fw.bufs = fw.headers[:0], fw.bufs[:0]
	frameWriters.Put(fw)
}

// maxFrameHeader is the longest header of an unmasked frame: 2 bytes and a 64-bit length.
const maxFrameHeader = 10

// appendTextHeader appends the header of a final, unmasked text frame of n payload bytes.
func appendTextHeader(b []byte, n int) []byte {
	const finText = 0x81
	switch {
	case n < 126:
		return append(b, finText, byte(n))
	case n <= 0xFFFF:
		b = append(b, finText, 126)
		return binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, finText, 127)
		return binary.BigEndian.AppendUint64(b, uint64(n))
	}
}
