package main

import (
	"io"
	"testing"

	"github.com/switchboard-dev/switchboard/service"
)

// The dm scenario with and without --compression against a node that compresses: both
// deliver every message, and the WebSockets read far fewer bytes with it (the payloads'
// padding is very compressible, so the ratio here says nothing about real messages).
func TestCompressionCutsTheWireBytes(t *testing.T) {
	base := startNode(t, service.Config{Compression: true})
	args := []string{"dm", "--url", base, "--users", "10", "--count", "100", "--publishers", "2", "--payload-bytes", "2048"}
	wire := map[bool]int64{}
	for _, compression := range []bool{false, true} {
		a := args
		if compression {
			a = append(a[:len(a):len(a)], "--compression")
		}
		code, res := runTool(t, a...)
		if code != exitPass || !res.Passed {
			t.Fatalf("compression %v: exit %d, failures %v", compression, code, res.Failures)
		}
		if res.Wire == nil || res.Wire.Compression != compression || res.Wire.BytesIn <= 0 || res.Wire.BytesPerOp <= 0 {
			t.Fatalf("compression %v: wire report %+v", compression, res.Wire)
		}
		wire[compression] = res.Wire.BytesIn
	}
	if wire[true]*2 > wire[false] {
		t.Fatalf("bytes read: %d compressed, %d not; want under half", wire[true], wire[false])
	}
	if wire[false] < 100*2048 {
		t.Fatalf("bytes read without compression: %d, under the 100 messages of 2 KB sent", wire[false])
	}
}

func TestCompressionFlagParses(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want bool
	}{{[]string{"dm"}, false}, {[]string{"dm", "--compression"}, true}, {[]string{"conns", "--compression=true"}, true}} {
		cfg, err := parseArgs(tc.args, io.Discard)
		if err != nil {
			t.Fatalf("%q: %v", tc.args, err)
		}
		if cfg.compression != tc.want || cfg.wireIn == nil {
			t.Fatalf("%q: compression %v (want %v), wire counter %v", tc.args, cfg.compression, tc.want, cfg.wireIn)
		}
	}
}
