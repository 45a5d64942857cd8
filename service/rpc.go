package service

import (
	"net/http"
)

// startRPC hands an rpc frame to the backend's RPC hook; the result frame follows when the
// backend answers. An error refuses the frame now.
func (s *Server) startRPC(c *client, cmd rpcCmd) error {
	return &apiError{status: http.StatusNotImplemented, code: codeNotEnabled, message: "this server has no RPC backend (--rpc-url)"}
}
