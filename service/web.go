package service

import (
	"io/fs"
	"net/http"
	"strings"
)

// serveFile serves one embedded page. The browser app is at /, the admin page at /admin,
// their scripts and styles under /assets/. The pages are public; the admin page asks for
// the admin key and sends it with its API calls.
func (s *Server) serveFile(name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.Assets == nil {
			writeError(w, &apiError{status: http.StatusNotFound, code: codeNotFound, message: "no web assets in this build"})
			return
		}
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Referrer-Policy", "no-referrer")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; connect-src 'self' ws: wss: http: https:; img-src 'self' data:; style-src 'self'; frame-ancestors 'none'")
		http.ServeFileFS(w, r, s.cfg.Assets, name)
	}
}

// handleAsset serves /assets/<file>.
func (s *Server) handleAsset(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, "/")
	if s.cfg.Assets == nil || !fs.ValidPath(name) || strings.HasSuffix(name, "/") {
		writeError(w, &apiError{status: http.StatusNotFound, code: codeNotFound, message: "no such asset"})
		return
	}
	if _, err := fs.Stat(s.cfg.Assets, name); err != nil {
		writeError(w, &apiError{status: http.StatusNotFound, code: codeNotFound, message: "no such asset"})
		return
	}
	s.serveFile(name)(w, r)
}
