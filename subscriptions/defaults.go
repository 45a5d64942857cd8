package subscriptions

import "time"

// The defaults of Config's tunable fields, exported so that the switchboard command's flags
// show and pass the same values (setDefaults is checked against them in a test).
const (
	DefaultHeartbeat        = time.Second
	DefaultMaxPending       = 4096
	DefaultRegistryInterval = 2 * time.Second
)
