package events

import (
	"errors"
	"net/http"
	"strconv"
	"testing"
	"time"
)

func TestSignMatchesAnIndependentHMAC(t *testing.T) {
	// python3: hmac.new(b"s3cret", b'1700000000.{"events":[]}', hashlib.sha256).hexdigest()
	const want = "sha256=41b4d3f6c59a79e37d083fb3cbe77f82807c4369fd469fb70cfa75e02d2e2775"
	if got := Sign("s3cret", "1700000000", []byte(`{"events":[]}`)); got != want {
		t.Errorf("Sign = %s, want %s", got, want)
	}
}

func TestVerify(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	body := []byte(`{"events":[{"id":"x"}]}`)
	signed := func(ts time.Time, secret string, b []byte) http.Header {
		h := http.Header{}
		s := strconv.FormatInt(ts.Unix(), 10)
		h.Set(HeaderTimestamp, s)
		h.Set(HeaderSignature, Sign(secret, s, b))
		return h
	}
	tests := []struct {
		name      string
		header    http.Header
		tolerance time.Duration
		ok        bool
	}{
		{"accepts a request signed now", signed(now, "k", body), time.Minute, true},
		{"accepts an old request when the tolerance is off", signed(now.Add(-time.Hour), "k", body), 0, true},
		{"refuses another secret", signed(now, "other", body), time.Minute, false},
		{"refuses another body", signed(now, "k", []byte(`{"events":[]}`)), time.Minute, false},
		{"refuses a stale timestamp", signed(now.Add(-2*time.Minute), "k", body), time.Minute, false},
		{"refuses a future timestamp", signed(now.Add(2*time.Minute), "k", body), time.Minute, false},
		{"refuses a missing signature", http.Header{HeaderTimestamp: {"1700000000"}}, time.Minute, false},
		{"refuses a missing timestamp", http.Header{HeaderSignature: {"sha256=00"}}, time.Minute, false},
		{"refuses a timestamp that is not a number", http.Header{HeaderTimestamp: {"soon"}, HeaderSignature: {"sha256=00"}}, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Verify("k", tt.header, body, now, tt.tolerance)
			if tt.ok != (err == nil) || (err != nil && !errors.Is(err, ErrBadSignature)) {
				t.Errorf("Verify = %v", err)
			}
		})
	}
}

func FuzzVerify(f *testing.F) {
	f.Add("1700000000", "sha256=41b4d3f6c59a79e37d083fb3cbe77f82807c4369fd469fb70cfa75e02d2e2775", []byte(`{"events":[]}`))
	f.Add("-1", "", []byte{})
	f.Add("99999999999999999999", "sha256=", []byte("x"))
	f.Fuzz(func(t *testing.T, ts, sig string, body []byte) {
		h := http.Header{}
		h.Set(HeaderTimestamp, ts)
		h.Set(HeaderSignature, sig)
		err := Verify("s3cret", h, body, time.Unix(1_700_000_000, 0), time.Hour)
		if err == nil && sig != Sign("s3cret", h.Get(HeaderTimestamp), body) {
			t.Fatalf("accepted signature %q for timestamp %q", sig, ts)
		}
		if err != nil && !errors.Is(err, ErrBadSignature) {
			t.Fatalf("error %v does not wrap ErrBadSignature", err)
		}
	})
}
