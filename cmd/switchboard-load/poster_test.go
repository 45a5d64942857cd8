package main

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// countConns serves h and counts the TCP connections its clients open.
func countConns(t *testing.T, h http.HandlerFunc, tls bool) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			n.Add(1)
		}
	}
	if tls {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	return srv, &n
}

func TestPosterKeepsOneConnectionAndSendsWhatNetHTTPWould(t *testing.T) {
	srv, conns := countConns(t, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Method != "POST" || r.URL.Path != "/base/v1/users/bob/messages" || r.Header.Get("Authorization") != "Bearer k" ||
			r.Header.Get("Content-Type") != "application/json" || string(body) != `{"t":1,"s":2}` || r.Host == "" {
			w.WriteHeader(http.StatusTeapot)
			return
		}
		w.WriteHeader(http.StatusAccepted)
		_, _ = io.WriteString(w, `{"id":"1-0"}`+"\n")
	}, false)
	p, err := newPoster(srv.URL+"/base", "k", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	for range 50 {
		status, answer, err := p.post("/v1/users/bob/messages", []byte(`{"t":1,"s":2}`))
		if err != nil || status != http.StatusAccepted || string(answer) != `{"id":"1-0"}`+"\n" {
			t.Fatalf("post: %d %q %v", status, answer, err)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("50 posts opened %d connections, want 1", n)
	}
}

// With a key prefix every request carries its own Idempotency-Key; without one, none.
func TestPosterSendsAFreshIdempotencyKeyPerRequest(t *testing.T) {
	got := make(chan []string, 3)
	srv, _ := countConns(t, func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Values("Idempotency-Key")
		w.WriteHeader(http.StatusAccepted)
	}, false)
	var keys []string
	p, err := newPoster(srv.URL, "", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	post := func() {
		if status, _, err := p.post("/v1/users/bob/messages", []byte(`1`)); err != nil || status != http.StatusAccepted {
			t.Fatalf("post: %d %v", status, err)
		}
		keys = append(keys, <-got...)
	}
	post()
	if len(keys) != 0 {
		t.Fatalf("keys %q without a prefix", keys)
	}
	p.keyPrefix = "run.3."
	post()
	post()
	if len(keys) != 2 || keys[0] != "run.3.1" || keys[1] != "run.3.2" {
		t.Fatalf("keys %q, want run.3.1 and run.3.2", keys)
	}
}

func TestPosterReadsEveryAnswerFraming(t *testing.T) {
	tests := []struct {
		name    string
		handler http.HandlerFunc
		want    string
		status  int
		conns   int64 // after three posts
	}{
		{"a chunked answer", func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusAccepted)
			_, _ = io.WriteString(w, `{"recip`)
			w.(http.Flusher).Flush()
			_, _ = io.WriteString(w, `ients":3}`)
		}, `{"recipients":3}`, 202, 1},
		{"an answer that closes the connection", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Connection", "close")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, `{"error":{}}`)
		}, `{"error":{}}`, 503, 3},
		{"an empty answer", func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusNoContent)
		}, ``, 204, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, conns := countConns(t, tt.handler, false)
			p, err := newPoster(srv.URL, "", 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer p.close()
			for range 3 {
				status, answer, err := p.post("/x", []byte(`{}`))
				if err != nil || status != tt.status || string(answer) != tt.want {
					t.Fatalf("post: %d %q %v", status, answer, err)
				}
			}
			if n := conns.Load(); n != tt.conns {
				t.Fatalf("%d connections, want %d", n, tt.conns)
			}
		})
	}
}

// A connection the server dropped fails the request in flight, which is never retried (it
// could be a duplicate), and the next request dials again.
func TestPosterDoesNotRetryButRecovers(t *testing.T) {
	var calls atomic.Int64
	srv, _ := countConns(t, func(w http.ResponseWriter, _ *http.Request) {
		if calls.Add(1) == 2 {
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close()
			return
		}
		w.WriteHeader(http.StatusAccepted)
	}, false)
	p, err := newPoster(srv.URL, "", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	var errs []string
	for range 3 {
		if _, _, err := p.post("/x", nil); err != nil {
			errs = append(errs, errorClass(err))
		}
	}
	if calls.Load() != 3 || len(errs) != 1 || errs[0] != "connection closed by the server" {
		t.Fatalf("%d calls, errors %q", calls.Load(), errs)
	}
}

func TestPosterTimesOut(t *testing.T) {
	release := make(chan struct{})
	srv, _ := countConns(t, func(http.ResponseWriter, *http.Request) { <-release }, false)
	defer close(release)
	p, err := newPoster(srv.URL, "", 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	if _, _, err := p.post("/x", nil); err == nil || errorClass(err) != "timeout" {
		t.Fatalf("error %v (%s), want a timeout", err, errorClass(err))
	}
}

func TestPosterSpeaksTLS(t *testing.T) {
	srv, _ := countConns(t, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusAccepted) }, true)
	p, err := newPoster(srv.URL, "", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	p.tls.RootCAs = srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	if status, _, err := p.post("/x", nil); err != nil || status != http.StatusAccepted {
		t.Fatalf("post: %d %v", status, err)
	}
}

func TestPosterRefusesGarbage(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 4096)
		_, _ = c.Read(buf)
		_, _ = io.WriteString(c, "SSH-2.0-OpenSSH\r\n\r\n")
	}()
	p, err := newPoster("http://"+ln.Addr().String(), "", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	if _, _, err := p.post("/x", nil); err == nil || !strings.Contains(err.Error(), "malformed HTTP answer") {
		t.Fatalf("error %v", err)
	}
}
