package service

import (
	"bytes"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// tcpPair returns both ends of a real loopback TCP connection.
func tcpPair(t testing.TB) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

func TestHandshakeConnHoldsTheFirstWriteUntilTheNext(t *testing.T) {
	client, server := tcpPair(t)
	h := &handshakeConn{Conn: server}
	if n, err := h.Write([]byte("answer;")); n != 7 || err != nil {
		t.Fatalf("held write: %d, %v", n, err)
	}
	// Nothing may have left yet.
	_ = client.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if n, err := client.Read(make([]byte, 16)); n != 0 || err == nil {
		t.Fatalf("read %d bytes before the second write (%v): the first write was not held", n, err)
	}
	if n, err := h.Write([]byte("frame;")); n != 6 || err != nil {
		t.Fatalf("second write: %d, %v (n must count the caller's bytes only)", n, err)
	}
	if err := h.writeBuffers(net.Buffers{[]byte("a;"), []byte("b;")}); err != nil {
		t.Fatal(err)
	}
	h.Close()
	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, _ := io.ReadAll(client)
	if string(got) != "answer;frame;a;b;" {
		t.Fatalf("the peer read %q", got)
	}
}

func TestHandshakeConnFlushesWhatItHoldsOnClose(t *testing.T) {
	client, server := tcpPair(t)
	h := &handshakeConn{Conn: server}
	_, _ = h.Write([]byte("HTTP/1.1 400 Bad Request\r\n\r\n"))
	h.Close()
	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if got, _ := io.ReadAll(client); !strings.HasPrefix(string(got), "HTTP/1.1 400") {
		t.Fatalf("the peer read %q, want the held answer", got)
	}
}

// Concurrent writers (a ping through gws, the drain's writev) must never overtake the held
// answer, whichever flushes it.
func TestHandshakeConnNothingOvertakesTheHeldAnswer(t *testing.T) {
	for range 50 {
		client, server := tcpPair(t)
		h := &handshakeConn{Conn: server}
		_, _ = h.Write([]byte("answer;"))
		var wg sync.WaitGroup
		wg.Go(func() { _, _ = h.Write([]byte("ping;")) })
		wg.Go(func() { _ = h.writeBuffers(net.Buffers{[]byte("frame;")}) })
		wg.Wait()
		h.Close()
		_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, _ := io.ReadAll(client)
		if !bytes.HasPrefix(got, []byte("answer;")) || len(got) != len("answer;ping;frame;") {
			t.Fatalf("the peer read %q", got)
		}
	}
}
