package service

import (
	_ "embed"
	"net/http"
)

// openAPIDocument is the OpenAPI 3.1 description of /v1 and /admin. It is kept as JSON, the
// form it is served in, so that the binary embeds it as is and needs no YAML decoder; the
// tests check it against the router and every API answer against it.
//
//go:embed openapi.json
var openAPIDocument []byte

// OpenAPI returns the OpenAPI 3.1 document served at /v1/openapi.json. The slice is shared:
// callers must not modify it.
func OpenAPI() []byte { return openAPIDocument }

// handleOpenAPI serves the OpenAPI document: GET /v1/openapi.json, without the API key (it
// tells nothing the protocol documentation does not, and tools fetch it before they have one).
func (s *Server) handleOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Cache-Control", "no-cache")
	writeJSONBytes(w, http.StatusOK, openAPIDocument)
}
