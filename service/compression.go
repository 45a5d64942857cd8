package service

import (
	"net/http"
	"strings"

	"github.com/lxzan/gws"
)

// rsv1 is the first header byte's RSV1 bit: with permessage-deflate, a compressed message.
const rsv1 = 0x40

// reservedBits returns the RSV bits a client frame may not set: all three, or RSV2 and RSV3
// once permessage-deflate was negotiated.
func (g *frameGuard) reservedBits() byte {
	if g.deflate {
		return 0x30
	}
	return 0x70
}

// deflateNegotiated reports whether the upgrade of r will negotiate permessage-deflate:
// compression is on and the client offers it. It is gws's own test (Upgrader's
// getPermessageDeflate), which keeps the outcome to itself; the frame guard and the outbox
// need it before the first frame.
func (s *Server) deflateNegotiated(r *http.Request) bool {
	return s.cfg.Compression && strings.Contains(r.Header.Get("Sec-WebSocket-Extensions"), "permessage-deflate")
}

// compressedWriter writes an outbox's batch through gws, which compresses each message of
// its threshold (512 bytes) and more and sends smaller ones as they are. The outbox's own
// writev of prebuilt frames cannot compress, so a compressed connection pays one write per
// message instead of one per batch — part of compression's cost. gws takes its own write
// lock; the outbox's lock around the batch still keeps the close frame out of it.
func compressedWriter(conn *gws.Conn) func(frames [][]byte) error {
	return func(frames [][]byte) error {
		for _, f := range frames {
			if err := conn.WriteMessage(gws.OpcodeText, f); err != nil {
				return err
			}
		}
		return nil
	}
}
