package subscriptions

import "time"

// Observer receives the hub's measurements, for metrics. Its methods are called on hot
// paths and must not block.
type Observer interface {
	// ObservePublish reports one round trip of n deliveries (appends+publishes) and its error.
	ObservePublish(d time.Duration, n int, err error)
	// ObserveDispatch reports how long after Redis stored a message the node dispatched it
	// to its local connections (millisecond resolution, across the two clocks).
	ObserveDispatch(lag time.Duration)
	// ObserveRedisError reports a failed Redis call on any other path.
	ObserveRedisError()
}

type nopObserver struct{}

func (nopObserver) ObservePublish(time.Duration, int, error) {}
func (nopObserver) ObserveDispatch(time.Duration)            {}
func (nopObserver) ObserveRedisError()                       {}
