//go:build race

package service

// raceEnabled: under the race detector sync.Pool drops items, so allocation counts differ.
const raceEnabled = true
