//go:build race

package service

// raceEnabled: under the race detector sync.Pool drops items, so allocation counts differ.
const raceEnabled = true

// RaceEnabled tells the external tests (package service_test) the same.
const RaceEnabled = raceEnabled
