package service_test

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"
)

// heapInUse returns the live heap after a collection: the node runs in the test process,
// so this is what its requests hold.
func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// A client that declares a 32 MiB body and stalls after a few bytes holds what it sent,
// not what it declared: twenty of them held 654 MB before (issue 13, finding 7).
func TestStalledBigBodiesDoNotHoldTheirDeclaredLength(t *testing.T) {
	const stalled, declared = 20, 32 << 20
	srv, _ := startRedis(t)
	n := startNode(t, onRedis(srv), "a")
	b := newBystanders(t, n)
	probe := startBystander(t, n, n, "bystander", nil)
	before := heapInUse()

	for i := range stalled {
		conn, err := net.Dial("tcp", strings.TrimPrefix(n.base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		// Expect: 100-continue makes the node say when its handler starts reading the body,
		// which is when it allocates for it.
		fmt.Fprintf(conn, "POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"+
			"Content-Length: %d\r\nExpect: 100-continue\r\n\r\n", declared)
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		status, err := bufio.NewReader(conn).ReadString('\n')
		if err != nil || !strings.HasPrefix(status, "HTTP/1.1 100") {
			t.Fatalf("stalled request %d: %q %v, want 100 Continue", i, status, err)
		}
		if _, err := conn.Write([]byte(`{"messages":[{"to":"bob","data":`)); err != nil {
			t.Fatal(err)
		}
	}
	// The handlers have the few bytes, or will have them in a moment; either way they have
	// allocated whatever they allocate before reading.
	b.checkUntouched(t)
	after := heapInUse()
	grown := int64(after) - int64(before)
	t.Logf("heap before %d KiB, with %d stalled %d MiB bodies %d KiB (grew %d KiB; %d MiB declared in all)",
		before>>10, stalled, declared>>20, after>>10, grown>>10, stalled*declared>>20)
	if grown > 16<<20 {
		t.Fatalf("the heap grew by %d MiB with %d stalled bodies, want far less than the %d MiB they declared",
			grown>>20, stalled, stalled*declared>>20)
	}

	// A Content-Length over the limit is still refused at once, without reading.
	conn, err := net.Dial("tcp", strings.TrimPrefix(n.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", declared+1)
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("a declared %d bytes got %d, want 413 before any body byte", declared+1, res.StatusCode)
	}
	b.checkUntouched(t)
	t.Logf("bystander p99 %v", probe.Stop())
}
