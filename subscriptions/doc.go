// Package subscriptions is the domain core of Switchboard: per-user channels multiplexed over
// one shared Redis Pub/Sub connection per node, the atomic append+publish delivery script,
// the per-user history streams that make resume and catch-up lossless, and rooms.
//
// It knows Redis and nothing of HTTP or WebSockets. A connection is represented by a [Sink]
// that accepts already-encoded envelopes without blocking; the service package implements it
// on top of a WebSocket.
package subscriptions
