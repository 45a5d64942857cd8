package main

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"net/url"
	"strconv"
	"time"

	"github.com/switchboard-dev/switchboard/service"
)

// The parsers of settings' text: each checks its value and stores it, or says what the
// value must be (parseConfig adds the flag's name and the value given).

func text(dst *string) func(string) error {
	return func(s string) error { *dst = s; return nil }
}

// httpURL checks an http or https URL with a host, empty for none.
func httpURL(dst *string) func(string) error {
	return func(s string) error {
		if s != "" {
			u, err := url.Parse(s)
			if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
				return errors.New("must be an http(s) URL")
			}
		}
		*dst = s
		return nil
	}
}

// integer parses a whole number from lo to hi into dst.
func integer[T int | int64](dst *T, lo, hi int64) func(string) error {
	return func(s string) error {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < lo || n > hi {
			if hi == math.MaxInt64 || hi == math.MaxInt {
				return fmt.Errorf("must be an integer of at least %d", lo)
			}
			return fmt.Errorf("must be an integer from %d to %d", lo, hi)
		}
		*dst = T(n)
		return nil
	}
}

// duration parses a Go duration from lo to hi into dst.
func duration(dst *time.Duration, lo, hi time.Duration) func(string) error {
	return func(s string) error {
		d, err := time.ParseDuration(s)
		if err != nil || d < lo || d > hi {
			if hi == math.MaxInt64 {
				return fmt.Errorf("must be a duration of at least %v", lo)
			}
			return fmt.Errorf("must be a duration from %v to %v", lo, hi)
		}
		*dst = d
		return nil
	}
}

// fraction parses a number strictly between 0 and 1 into dst.
func fraction(dst *float64) func(string) error {
	return func(s string) error {
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || !(f > 0 && f < 1) {
			return errors.New("must be a fraction strictly between 0 and 1")
		}
		*dst = f
		return nil
	}
}

// optional leaves the zero value (the part's own default) for an empty setting.
func optional(set func(string) error) func(string) error {
	return func(s string) error {
		if s == "" {
			return nil
		}
		return set(s)
	}
}

func limit(dst *service.Limit) func(string) error {
	return func(s string) (err error) {
		*dst, err = service.ParseLimit(s)
		return err
	}
}

// cidrs checks a comma-separated list of CIDRs and keeps it as written.
func cidrs(dst *string) func(string) error {
	return func(s string) error {
		for _, p := range splitList(s) {
			if _, err := netip.ParsePrefix(p); err != nil {
				return fmt.Errorf("lists %q, which is not a CIDR such as 10.0.0.0/8", p)
			}
		}
		*dst = s
		return nil
	}
}

// boolean parses true or false (or 1, 0, t, f) into dst.
func boolean(dst *bool) func(string) error {
	return func(s string) error {
		b, err := strconv.ParseBool(s)
		if err != nil {
			return errors.New("must be true or false")
		}
		*dst = b
		return nil
	}
}

// positive parses a number above 0 and at most hi into dst.
func positive(dst *float64, hi float64) func(string) error {
	return func(s string) error {
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || !(f > 0 && f <= hi) {
			return fmt.Errorf("must be a number above 0 and at most %g", hi)
		}
		*dst = f
		return nil
	}
}

// offInteger parses a count where "off" means 0 (the feature is off).
func offInteger(dst *int) func(string) error {
	parse := integer(dst, 0, math.MaxInt32)
	return func(s string) error {
		if s == "off" {
			*dst = 0
			return nil
		}
		if err := parse(s); err != nil {
			return errors.New("must be an integer of at least 0, or off")
		}
		return nil
	}
}
