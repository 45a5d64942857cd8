package main

import "fmt"

// WireReport is what the run's WebSockets read from their sockets over the measured phase:
// frames as they crossed the wire (compressed when permessage-deflate was negotiated),
// headers included, TLS records' overhead included with wss. With --compression and
// without it, the same run shows what compression saves in bandwidth, and the server's CPU
// line what it costs.
type WireReport struct {
	Compression bool    `json:"compression"` // the tool offered permessage-deflate
	BytesIn     int64   `json:"bytes_in"`
	BytesPerOp  float64 `json:"bytes_per_op,omitempty"` // per delivered message, call or connection
}

func wireReport(bytes, ops int64, compression bool) *WireReport {
	w := &WireReport{Compression: compression, BytesIn: bytes}
	if ops > 0 {
		w.BytesPerOp = round1(float64(bytes) / float64(ops))
	}
	return w
}

func fmtWire(w *WireReport, op string) string {
	offered := "permessage-deflate not offered"
	if w.Compression {
		offered = "permessage-deflate offered"
	}
	s := fmt.Sprintf("%.1f MB", float64(w.BytesIn)/1e6)
	if w.BytesPerOp > 0 {
		s += fmt.Sprintf(" = %.0f B per %s", w.BytesPerOp, op)
	}
	return s + " (" + offered + ")"
}
