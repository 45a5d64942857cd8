package events

import "testing"

// TestDefaultsAreWhatSetDefaultsGives keeps the exported defaults, which the command's flags
// show, equal to what a zero Config becomes.
func TestDefaultsAreWhatSetDefaultsGives(t *testing.T) {
	var c Config
	c.setDefaults()
	if c.MaxAge != DefaultMaxAge || c.Timeout != DefaultTimeout || c.RetryMax != DefaultRetryMax {
		t.Fatalf("setDefaults gives max age %v, timeout %v, retry max %v; the exported defaults say %v, %v, %v",
			c.MaxAge, c.Timeout, c.RetryMax, DefaultMaxAge, DefaultTimeout, DefaultRetryMax)
	}
}
