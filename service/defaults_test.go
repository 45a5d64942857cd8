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
	want := Config{
		MaxMessageBytes:  DefaultMaxMessageBytes,
		PingInterval:     DefaultPingInterval,
		ReadTimeout:      DefaultReadTimeout(DefaultPingInterval),
		WriteTimeout:     DefaultWriteTimeout,
		MaxQueueMessages: DefaultMaxQueueMessages,
		MaxQueueBytes:    DefaultMaxQueueBytes,
		MaxConnsPerUser:  DefaultMaxConnsPerUser,
		FrameRate:        DefaultFrameRate,
		FrameBurst:       DefaultFrameBurst,
		ShutdownTimeout:  DefaultShutdownTimeout,
	}
	got := Config{
		MaxMessageBytes: c.MaxMessageBytes, PingInterval: c.PingInterval, ReadTimeout: c.ReadTimeout,
		WriteTimeout: c.WriteTimeout, MaxQueueMessages: c.MaxQueueMessages, MaxQueueBytes: c.MaxQueueBytes,
		MaxConnsPerUser: c.MaxConnsPerUser, FrameRate: c.FrameRate, FrameBurst: c.FrameBurst,
		ShutdownTimeout: c.ShutdownTimeout,
	}
	if got.PingInterval != want.PingInterval || got.ReadTimeout != want.ReadTimeout ||
		got.WriteTimeout != want.WriteTimeout || got.ShutdownTimeout != want.ShutdownTimeout ||
		got.MaxMessageBytes != want.MaxMessageBytes || got.MaxQueueMessages != want.MaxQueueMessages ||
		got.MaxQueueBytes != want.MaxQueueBytes || got.MaxConnsPerUser != want.MaxConnsPerUser ||
		got.FrameRate != want.FrameRate || got.FrameBurst != want.FrameBurst {
		t.Fatalf("setDefaults gives %+v, the exported defaults say %+v", got, want)
	}
	if DefaultReadTimeout(time.Second) != 7*time.Second {
		t.Fatalf("DefaultReadTimeout(1s) = %v", DefaultReadTimeout(time.Second))
	}
}
