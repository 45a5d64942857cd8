package service

import (
	"encoding/binary"
	"io"
)

// frameGuard sits between a WebSocket's socket and gws's bufio.Reader and follows the frame
// boundaries of the client→server byte stream, so that a frame RFC 6455 forbids fails the
// connection before gws parses it, and so that every frame — control and continuation
// frames included — is seen once, for the per-connection rate limit.
//
// Why a guard in front of gws rather than a patched copy of gws: gws v1.8.9 turns a 64-bit
// length with its top bit set into a negative int that passes its size check and panics
// slicing (reader.go), and the newest gws has the same code. A patch would have to be
// carried in the repo (a replace directive and a vendored copy) and re-applied on every
// upgrade; the guard is ~150 lines of our own, checks the whole of RFC 6455 §5.2's
// framing rules in one place (gws checks some of them, after allocating for the payload),
// costs a few ns per read, and is also where every frame can be counted, which gws's
// callbacks cannot do (continuation frames have no callback). It stays correct if gws is
// upgraded or fixed.
//
// Without an extension every RSV bit must be 0; with permessage-deflate negotiated (deflate),
// RSV1 marks a compressed message and may be set on a message's first frame only (RFC 7692
// §6). Frame payloads are neither copied nor unmasked: the guard only skips them.
type frameGuard struct {
	r       io.Reader
	owner   frameOwner // nil: frames are checked, not counted
	deflate bool       // permessage-deflate was negotiated: RSV1 may mark a compressed message
	// limit is the largest data message, in payload bytes (0: none). The guard checks it
	// rather than gws, whose own check (the same limit) would close at once and lose the
	// close frame to a reset (see linger), and with a reason of its own.
	limit uint64

	hdr       [maxClientFrameHeader]byte
	have      int    // header bytes collected
	need      int    // header length, once the second byte is known (0 before)
	remaining uint64 // payload bytes of the current frame still to pass
	open      bool   // a fragmented data message has begun and not ended
	message   uint64 // payload bytes of the current data message, its frames so far
	err       error  // the violation, returned from every Read once found
	pending   *frameViolation
}

// frameOwner is told of each frame a frameGuard passes and of the violation that ends it;
// the client implements it.
type frameOwner interface {
	// frameSeen is called with each frame's opcode and FIN bit once its header is whole
	// and valid; a violation it returns fails the connection (the rate limit's 1008).
	frameSeen(opcode byte, fin bool) *frameViolation
	// framesFailed is called once, with the first violation, before it is returned to
	// the reader; it closes the connection with the violation's code.
	framesFailed(v *frameViolation)
}

// maxClientFrameHeader is the longest header a client frame has: 2 bytes, a 64-bit
// length and a mask key.
const maxClientFrameHeader = 2 + 8 + 4

// WebSocket opcodes (RFC 6455 §5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

// closeProtocolError is the close code of a frame that breaks RFC 6455.
const closeProtocolError = 1002

// frameViolation is why a connection is failed by its frame guard: a close code and
// reason for the peer, and the reason label for switchboard_connections_closed_total.
type frameViolation struct {
	code   uint16
	reason string
	label  string
}

func (v *frameViolation) Error() string { return "websocket: " + v.reason }

// protocolViolation returns the violation of a frame that breaks RFC 6455. The values
// are fixed, so that failing a connection allocates nothing.
func protocolViolation(reason string) *frameViolation {
	return &frameViolation{code: closeProtocolError, reason: reason, label: "protocol_error"}
}

var (
	errRSV             = protocolViolation("reserved bits set without an extension")
	errRSV1            = protocolViolation("compressed bit set on a control or continuation frame")
	errOpcode          = protocolViolation("reserved opcode")
	errUnmasked        = protocolViolation("client frames must be masked")
	errControlFragment = protocolViolation("fragmented control frame")
	errControlLength   = protocolViolation("control frame payload over 125 bytes")
	errLengthTopBit    = protocolViolation("64-bit payload length with its most significant bit set")
	errLengthEncoding  = protocolViolation("payload length not in its shortest form")
	errContinuation    = protocolViolation("continuation frame without a message to continue")
	errInterleaved     = protocolViolation("new data frame inside a fragmented message")
)

// closeMessageTooBig is the close code of a message over the size limit.
const closeMessageTooBig = 1009

// errTooLarge fails a connection whose client sent a message over the limit, refused at the
// header of the frame that passes it, before its payload is read.
var errTooLarge = &frameViolation{code: closeMessageTooBig, reason: "message too large", label: "too_large"}

// Read reads from the socket and passes on the bytes of whole or partial frames that
// conform; at the first violation it passes on what precedes the offending frame and then
// returns the violation, having called fail.
func (g *frameGuard) Read(p []byte) (int, error) {
	if g.err != nil {
		return 0, g.err
	}
	if g.pending != nil { // found in the previous Read, after the bytes it returned
		return 0, g.violate(g.pending)
	}
	n, err := g.r.Read(p)
	if v, at := g.scan(p[:n]); v != nil {
		if at > 0 {
			g.pending = v
			return at, nil
		}
		return 0, g.violate(v)
	}
	return n, err
}

func (g *frameGuard) violate(v *frameViolation) error {
	g.pending, g.err = nil, v
	if g.owner != nil {
		g.owner.framesFailed(v)
	}
	return v
}

// scan follows the frames in b. It returns the first violation and the offset in b of
// the frame that holds it (0 when that frame began in an earlier read).
func (g *frameGuard) scan(b []byte) (*frameViolation, int) {
	start := 0 // offset of the frame whose header is being read, if it began in b
	for i := 0; i < len(b); {
		if g.remaining > 0 {
			// The payload is passed on as it is; only its length matters.
			skip := uint64(len(b) - i)
			if skip > g.remaining {
				skip = g.remaining
			}
			g.remaining -= skip
			i += int(skip)
			continue
		}
		if g.have == 0 {
			start = i
		}
		c := b[i]
		i++
		g.hdr[g.have] = c
		g.have++
		switch g.have {
		case 1:
			if c&g.reservedBits() != 0 {
				return errRSV, start
			}
			switch c & 0x0F {
			case opContinuation, opText, opBinary, opClose, opPing, opPong:
			default:
				return errOpcode, start
			}
			continue
		case 2:
			if c&0x80 == 0 {
				return errUnmasked, start
			}
			if g.hdr[0]&0x08 != 0 { // a control frame
				if g.hdr[0]&0x80 == 0 {
					return errControlFragment, start
				}
				if c&0x7F > 125 {
					return errControlLength, start
				}
			}
			switch c & 0x7F {
			case 126:
				g.need = 2 + 2 + 4
			case 127:
				g.need = 2 + 8 + 4
			default:
				g.need = 2 + 4
			}
		}
		if g.have < g.need {
			continue
		}
		if v := g.frame(); v != nil {
			return v, start
		}
	}
	return nil, 0
}

// frame checks a whole header and starts its payload.
func (g *frameGuard) frame() *frameViolation {
	fin, op := g.hdr[0]&0x80 != 0, g.hdr[0]&0x0F
	var n uint64
	switch l := g.hdr[1] & 0x7F; l {
	case 126:
		n = uint64(binary.BigEndian.Uint16(g.hdr[2:4]))
		if n < 126 {
			return errLengthEncoding
		}
	case 127:
		n = binary.BigEndian.Uint64(g.hdr[2:10])
		if n>>63 != 0 {
			return errLengthTopBit
		}
		if n <= 0xFFFF {
			return errLengthEncoding
		}
	default:
		n = uint64(l)
	}
	if g.hdr[0]&rsv1 != 0 && op != opText && op != opBinary {
		return errRSV1 // a control or continuation frame cannot be the start of a compressed message
	}
	switch op {
	case opContinuation:
		if !g.open {
			return errContinuation
		}
		g.open = !fin
		g.message += n // no overflow: both are under 2^63
	case opText, opBinary:
		if g.open {
			return errInterleaved
		}
		g.open = !fin
		g.message = n
	}
	if g.limit > 0 && g.message > g.limit {
		return errTooLarge
	}
	g.have, g.need, g.remaining = 0, 0, n
	if g.owner != nil {
		return g.owner.frameSeen(op, fin)
	}
	return nil
}
