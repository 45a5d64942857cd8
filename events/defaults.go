package events

import "time"

// The defaults of the webhook sender's timing (see Config), exported so that the
// switchboard command's flags show and pass the same values (checked in a test).
const (
	DefaultMaxAge   = 24 * time.Hour
	DefaultTimeout  = 10 * time.Second
	DefaultRetryMax = 30 * time.Second
)
