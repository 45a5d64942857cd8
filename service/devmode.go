package service

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// devModeGuard protects a node in dev mode, where /v1 and /admin may be open and /ws takes
// any ?user=, from the browser of whoever runs it:
//
//   - DNS rebinding: a page on a name the attacker controls, re-pointed at 127.0.0.1,
//     reaches the node with that name as its Host. Only loopback Host names (and
//     DevHosts) are served; a request without Host is not a browser's and passes.
//   - CSRF: any page can POST text/plain to /v1 without a preflight. Browser requests to
//     /v1 and /admin from another origin (Origin, or Sec-Fetch-Site when there is no
//     Origin) are refused; requests without either (curl, backends) pass.
//
// /healthz and /readyz are exempt from the Host check: they tell nothing, and load balancer
// probes send whatever Host (or none) they were configured with.
func (s *Server) devModeGuard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		if p != "/healthz" && p != "/readyz" && !s.devHostAllowed(r.Host) {
			writeError(w, &apiError{status: http.StatusForbidden, code: codeForbidden, message: fmt.Sprintf(
				"dev mode serves only loopback Host names (localhost, 127.0.0.1, [::1]), not %q: "+
					"add it with --dev-hosts, or set --jwt-secret", r.Host)})
			return
		}
		if (strings.HasPrefix(p, "/v1/") || p == "/v1" || strings.HasPrefix(p, "/admin")) && crossOrigin(r) {
			writeError(w, &apiError{status: http.StatusForbidden, code: codeForbidden,
				message: "dev mode refuses cross-origin browser requests to /v1 and /admin"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// devHostAllowed reports whether dev mode serves a request with this Host header.
func (s *Server) devHostAllowed(hostport string) bool {
	if hostport == "" {
		return true
	}
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	if ip, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")); err == nil && ip.IsLoopback() {
		return true
	}
	for _, h := range s.cfg.DevHosts {
		if h == "*" || strings.EqualFold(strings.TrimSuffix(h, "."), host) {
			return true
		}
	}
	return false
}

// crossOrigin reports whether r is a browser request from a page of another origin than
// this server's. Sec-Fetch-Site counts "same-site" as foreign too: another port or
// subdomain is another origin.
func crossOrigin(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "cross-site", "same-site":
		return true
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return false
	}
	// An Origin is scheme://host[:port] and nothing else ("null" for opaque origins);
	// cut rather than url.Parse, which allocates on the API's hot path.
	_, host, ok := strings.Cut(origin, "://")
	return !ok || host == "" || !strings.EqualFold(host, r.Host)
}
