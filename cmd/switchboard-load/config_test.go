package main

import (
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseArgsDefaults(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		check func(t *testing.T, c config)
	}{
		{"dm has bounded defaults", []string{"dm"}, func(t *testing.T, c config) {
			if c.users != 1000 || c.publishers != 16 || c.rate != 0 || c.duration != 10*time.Second || c.count != 0 ||
				c.grace != 5*time.Second || c.dialers != 200 || c.payloadBytes != 100 || !slices.Equal(c.urls, []string{"http://127.0.0.1:8080"}) {
				t.Errorf("defaults: %+v", c)
			}
		}},
		{"fanout names its room after the user prefix", []string{"fanout", "--user-prefix", "bench"}, func(t *testing.T, c config) {
			if c.members != 1000 || c.room != "bench-room" || c.publishers != defaultRoomPosters {
				t.Errorf("fanout: %+v", c)
			}
		}},
		{"conns opens 10000 and holds 2s", []string{"conns"}, func(t *testing.T, c config) {
			if c.conns != 10000 || c.dialers != 200 || c.hold != 2*time.Second {
				t.Errorf("conns: %+v", c)
			}
		}},
		{"a random user prefix keeps runs apart", []string{"dm"}, func(t *testing.T, c config) {
			other, _ := parseArgs([]string{"dm"}, io.Discard)
			if !strings.HasPrefix(c.userPrefix, "load-") || len(c.userPrefix) != len("load-")+6 || c.userPrefix == other.userPrefix {
				t.Errorf("prefixes %q and %q", c.userPrefix, other.userPrefix)
			}
		}},
		{"a count alone is bounded by a safety duration", []string{"dm", "--count", "500"}, func(t *testing.T, c config) {
			if c.count != 500 || c.duration != countOnlyDuration {
				t.Errorf("count %d duration %s", c.count, c.duration)
			}
		}},
		{"a count and a duration both hold", []string{"dm", "--count", "500", "--duration", "3s"}, func(t *testing.T, c config) {
			if c.count != 500 || c.duration != 3*time.Second {
				t.Errorf("count %d duration %s", c.count, c.duration)
			}
		}},
		{"several URLs spread the load, single or double dashes", []string{"dm", "-url", " http://a:1/ ,https://b:2/base", "--rate", "2500.5", "--json"}, func(t *testing.T, c config) {
			if !slices.Equal(c.urls, []string{"http://a:1", "https://b:2/base"}) || c.rate != 2500.5 || !c.json {
				t.Errorf("urls %q rate %v json %v", c.urls, c.rate, c.json)
			}
		}},
		{"rpc keeps 4 calls in flight on 400 connections under the frame limit", []string{"rpc"}, func(t *testing.T, c config) {
			if c.conns != 400 || c.inFlight != 4 || c.connRate != 45 || c.rate != 0 || c.duration != 10*time.Second ||
				c.callTimeout != 10*time.Second || c.method != "load.echo" || c.backend.serve || c.backend.addr != "127.0.0.1:9099" || c.backend.cacheS != 60 {
				t.Errorf("rpc: %+v", c)
			}
		}},
		{"dm sends by HTTP unless told otherwise, and mints the dm grant it is given", []string{"dm", "--jwt-secret", "s", "--jwt-dm", " a*, b ,"}, func(t *testing.T, c config) {
			if c.via != "http" || !slices.Equal(c.jwtDM, []string{"a*", "b"}) || c.signer == nil || !slices.Equal(c.signer.dm, c.jwtDM) {
				t.Errorf("dm: via %q, grant %q", c.via, c.jwtDM)
			}
		}},
		{"soak runs ten minutes of steady, mixed load", []string{"soak"}, func(t *testing.T, c config) {
			k := c.soak
			if c.users != 1000 || c.publishers != 8 || c.rate != 200 || c.duration != 10*time.Minute || c.grace != 15*time.Second ||
				k.roomRate != 20 || k.rooms != 4 || k.roomMembers != 50 || k.bigRoomMembers != 500 || k.roomPublishers != 2 ||
				k.churnRate != 20 || k.offline != time.Second || k.sampleEvery != 30*time.Second || k.killEvery != 30*time.Second || k.redisAddr != "" {
				t.Errorf("soak: %+v", c)
			}
		}},
		{"credentials are kept", []string{"conns", "--api-key", "k", "--jwt-secret", "s", "--pid", "42"}, func(t *testing.T, c config) {
			if c.apiKey != "k" || c.jwtSecret != "s" || c.pid != 42 {
				t.Errorf("%+v", c)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseArgs(tt.args, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, c)
		})
	}
}

func TestParseArgsRefusals(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no scenario", nil, "no scenario"},
		{"an unknown scenario", []string{"storm"}, `unknown scenario "storm"`},
		{"a flag of another scenario", []string{"conns", "--users", "5"}, "flag provided but not defined: -users"},
		{"a stray argument", []string{"dm", "extra"}, `unexpected argument "extra"`},
		{"a URL without a scheme", []string{"dm", "--url", "127.0.0.1:8080"}, "want http://host:port"},
		{"a ws URL", []string{"dm", "--url", "ws://h:1"}, "want http://host:port"},
		{"a URL with a query", []string{"dm", "--url", "http://h:1/?x=1"}, "no query"},
		{"no URL at all", []string{"dm", "--url", " , "}, "at least one URL"},
		{"zero users", []string{"dm", "--users", "0"}, "--users must be at least 1"},
		{"zero publishers", []string{"fanout", "--publishers", "0"}, "--publishers must be at least 1"},
		{"a negative rate", []string{"dm", "--rate", "-1"}, "--rate must be 0"},
		{"an unbounded duration", []string{"dm", "--duration", "0s"}, "every run is bounded"},
		{"a negative count", []string{"dm", "--count", "-3"}, "--count must be 0"},
		{"a huge payload", []string{"dm", "--payload-bytes", "2000000"}, "--payload-bytes must be from 0"},
		{"a user prefix that is not an id", []string{"dm", "--user-prefix", "a b"}, "--user-prefix"},
		{"a user prefix too long for the suffix", []string{"dm", "--user-prefix", strings.Repeat("a", 120)}, "at most 118 characters"},
		{"a room that is not an id", []string{"fanout", "--room", "a/b"}, "--room"},
		{"zero connections", []string{"conns", "--conns", "0"}, "--conns must be at least 1"},
		{"no dialers", []string{"conns", "--dialers", "0"}, "--dialers must be at least 1"},
		{"a negative hold", []string{"conns", "--hold", "-1s"}, "--hold must not be negative"},
		{"a bad duration", []string{"dm", "--duration", "ten"}, "invalid value"},
		{"more calls in flight than a node allows", []string{"rpc", "--in-flight", "17"}, "--in-flight must be from 1 to 16"},
		{"no calls in flight", []string{"rpc", "--in-flight", "0"}, "--in-flight must be from 1 to 16"},
		{"an rpc run without connections", []string{"rpc", "--conns", "0"}, "--conns must be at least 1"},
		{"a negative connection rate", []string{"rpc", "--conn-rate", "-5"}, "--conn-rate must be 0"},
		{"a method that is not an id", []string{"rpc", "--method", "a b"}, "--method"},
		{"a served backend without the secret it checks", []string{"rpc", "--serve-backend"}, "give the node's --webhook-secret"},
		{"a served backend on no address", []string{"dm", "--serve-backend", "--webhook-secret", "s", "--backend-addr", "nowhere"}, "--backend-addr"},
		{"a negative backend delay", []string{"rpc", "--serve-backend", "--webhook-secret", "s", "--backend-delay", "-1ms"}, "--backend-delay"},
		{"an unknown way to send DMs", []string{"dm", "--via", "carrier-pigeon"}, `--via must be "http" or "ws"`},
		{"a dm grant without a token key", []string{"dm", "--jwt-dm", "*"}, "--jwt-dm is a claim of minted tokens"},
		{"a soak without a rate", []string{"soak", "--rate", "0"}, "--rate must be positive"},
		{"a soak room larger than the users", []string{"soak", "--users", "100"}, "at most that many"},
		{"room posts without a room", []string{"soak", "--rooms", "0", "--big-room-members", "0"}, "--room-rate needs a room"},
		{"a soak that never samples", []string{"soak", "--sample-every", "0s"}, "--sample-every must be positive"},
		{"negative churn", []string{"soak", "--churn-rate", "-1"}, "--churn-rate must be 0"},
		{"rpc flags on another scenario", []string{"conns", "--in-flight", "4"}, "flag provided but not defined: -in-flight"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseArgs(tt.args, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestHelpIsNotAnError(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"--help"}, {"dm", "--help"}, {"conns", "-h"}} {
		var out strings.Builder
		if _, err := parseArgs(args, &out); !errors.Is(err, errHelp) {
			t.Errorf("%q: error %v, want errHelp", args, err)
		}
		if !strings.Contains(out.String(), "Usage: switchboard-load") {
			t.Errorf("%q printed no usage:\n%s", args, out.String())
		}
		if code := run(t.Context(), args, io.Discard, io.Discard); code != exitPass {
			t.Errorf("%q: exit %d, want 0", args, code)
		}
	}
}

func TestBadUsageExitsWithTwo(t *testing.T) {
	if code := run(t.Context(), []string{"dm", "--users", "-1"}, io.Discard, io.Discard); code != exitUsage {
		t.Fatalf("exit %d, want %d", code, exitUsage)
	}
}

func TestUnreadablePIDIsASetupError(t *testing.T) {
	var stderr strings.Builder
	code := run(t.Context(), []string{"conns", "--pid", "999999999", "--quiet"}, io.Discard, &stderr)
	if code != exitUsage || !strings.Contains(stderr.String(), "--pid 999999999") {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
}

// A server that is not there is a setup error, said in one line, not a thousand dial
// failures.
func TestUnreachableServerIsASetupError(t *testing.T) {
	var stderr strings.Builder
	code := run(t.Context(), []string{"dm", "--url", "http://127.0.0.1:1", "--users", "5", "--quiet"}, io.Discard, &stderr)
	if code != exitUsage || !strings.Contains(stderr.String(), "cannot reach http://127.0.0.1:1: connection refused") {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
}
