package service

import "time"

// The defaults of Config's tunable fields, exported so that the switchboard command's flags
// show and pass the same values (setDefaults is checked against them in a test).
const (
	DefaultMaxMessageBytes  = 65536
	DefaultPingInterval     = 20 * time.Second
	DefaultWriteTimeout     = 10 * time.Second
	DefaultMaxQueueMessages = 4096
	DefaultMaxQueueBytes    = 16 << 20
	DefaultMaxConnsPerUser  = 32
	DefaultFrameRate        = 50
	DefaultFrameBurst       = 100
	DefaultShutdownTimeout  = 5 * time.Second
)

// DefaultReadTimeout is the read timeout that goes with a ping interval: two pings may be
// lost, and a pong gets five more seconds.
func DefaultReadTimeout(ping time.Duration) time.Duration { return 2*ping + 5*time.Second }
