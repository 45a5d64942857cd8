package service

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/fstest"
)

// TestPageSecurityPolicy checks the Content-Security-Policy of the served pages: scripts
// and styles only from the node itself, while fetches may reach other origins (the app's
// token URL is an endpoint of the site's backend) and WebSockets any host.
func TestPageSecurityPolicy(t *testing.T) {
	s := &Server{cfg: Config{Assets: fstest.MapFS{"index.html": {Data: []byte("<!doctype html>")}}}}
	rec := httptest.NewRecorder()
	s.serveFile("index.html")(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d", rec.Code)
	}
	directives := map[string]string{}
	for _, d := range strings.Split(rec.Header().Get("Content-Security-Policy"), ";") {
		name, value, _ := strings.Cut(strings.TrimSpace(d), " ")
		directives[name] = value
	}
	want := map[string]string{
		"default-src":     "'self'",
		"script-src":      "", // absent: default-src 'self' governs scripts
		"style-src":       "'self'",
		"connect-src":     "'self' ws: wss: http: https:",
		"frame-ancestors": "'none'",
	}
	for name, value := range want {
		if directives[name] != value {
			t.Errorf("%s = %q, want %q (policy %q)", name, directives[name], value, rec.Header().Get("Content-Security-Policy"))
		}
	}
}
