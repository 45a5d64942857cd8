package service

// RPCGoroutinesStarted returns how many rpc call goroutines the server has started.
func (s *Server) RPCGoroutinesStarted() int64 { return s.rpcStarted.Load() }
