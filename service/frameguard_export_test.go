package service

// SetPanicHook makes the server call hook(user, where) at the top of its per-connection
// callbacks and jobs (OnOpen, OnMessage, OnPing, OnPong, OnClose, drain) and in the steps
// of its cleanup ("unsubscribed", "uncount"), so that a test
// can make one of them panic for one user.
func SetPanicHook(s *Server, hook func(user, where string)) {
	s.panicHook.Store(&hook)
}

// WireFrame encodes a client frame byte by byte, RFC-breaking ones included (see
// wireFrame).
var WireFrame = wireFrame

// The bounds of reading on after a close (see linger).
const (
	LingerBytes   = lingerBytes
	LingerTimeout = lingerTimeout
)
