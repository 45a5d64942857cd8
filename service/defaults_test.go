package service

import (
	"testing"
	"time"
)

// TestDefaultsAreWhatSetDefaultsGives keeps the exported defaults, which the command's flags
// show, equal to what a zero Config becomes.
func TestDefaultsAreWhatSetDefaultsGives(t *testing.T) {
	var c Config
	c.setDefaults()
	for _, tc := range []struct {
		name      string
		got, want any
	}{
		{"MaxMessageBytes", c.MaxMessageBytes, DefaultMaxMessageBytes},
		{"PingInterval", c.PingInterval, DefaultPingInterval},
		{"ReadTimeout", c.ReadTimeout, DefaultReadTimeout(DefaultPingInterval)},
		{"WriteTimeout", c.WriteTimeout, DefaultWriteTimeout},
		{"MaxQueueMessages", c.MaxQueueMessages, DefaultMaxQueueMessages},
		{"MaxQueueBytes", c.MaxQueueBytes, DefaultMaxQueueBytes},
		{"MaxConnsPerUser", c.MaxConnsPerUser, DefaultMaxConnsPerUser},
		{"FrameRate", c.FrameRate, float64(DefaultFrameRate)},
		{"FrameBurst", c.FrameBurst, DefaultFrameBurst},
		{"ShutdownTimeout", c.ShutdownTimeout, DefaultShutdownTimeout},
		{"Compression", c.Compression, false},
	} {
		if tc.got != tc.want {
			t.Errorf("setDefaults gives %s %v, the exported default is %v", tc.name, tc.got, tc.want)
		}
	}
	if d := DefaultReadTimeout(time.Second); d != 7*time.Second {
		t.Errorf("DefaultReadTimeout(1s) = %v, want 7s", d)
	}
}
