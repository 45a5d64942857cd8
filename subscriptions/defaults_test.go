package subscriptions

import "testing"

// TestDefaultsAreWhatSetDefaultsGives keeps the exported defaults, which the command's flags
// show, equal to what a zero Config becomes.
func TestDefaultsAreWhatSetDefaultsGives(t *testing.T) {
	var c Config
	c.setDefaults()
	if c.Heartbeat != DefaultHeartbeat || c.MaxPending != DefaultMaxPending || c.RegistryInterval != DefaultRegistryInterval {
		t.Fatalf("setDefaults gives heartbeat %v, max pending %d, registry interval %v; the exported defaults say %v, %d, %v",
			c.Heartbeat, c.MaxPending, c.RegistryInterval, DefaultHeartbeat, DefaultMaxPending, DefaultRegistryInterval)
	}
}
