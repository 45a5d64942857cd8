package events

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// Headers of every webhook request. HeaderSignature is present only with a secret.
const (
	// HeaderTimestamp carries the request's send time in unix seconds; it is signed, so a
	// receiver can refuse replays of old requests.
	HeaderTimestamp = "X-Switchboard-Timestamp"
	// HeaderSignature carries "sha256=" and the hex HMAC-SHA256 of timestamp + "." + body.
	HeaderSignature = "X-Switchboard-Signature"
)

// ErrBadSignature is returned by Verify for a request that is unsigned, wrongly signed, or
// signed too long ago; a receiver answers it with 401 and never processes the body.
var ErrBadSignature = errors.New("bad webhook signature")

// Sign returns the HeaderSignature value for body sent at timestamp (unix seconds, as
// written in HeaderTimestamp). Each attempt of a request is signed afresh, so a retried
// batch passes a receiver's timestamp tolerance.
func Sign(secret, timestamp string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(timestamp))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// Verify checks a webhook request as a receiver must: the signature over the exact body
// bytes, compared in constant time, and a timestamp within tolerance of now (tolerance <= 0
// skips that check). It returns an error wrapping ErrBadSignature when the request must be
// refused.
func Verify(secret string, h http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	ts := h.Get(HeaderTimestamp)
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: timestamp %q", ErrBadSignature, ts)
	}
	if tolerance > 0 {
		if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
			return fmt.Errorf("%w: timestamp %s is %s away", ErrBadSignature, ts, d.Round(time.Second))
		}
	}
	got := h.Get(HeaderSignature)
	if got == "" {
		return fmt.Errorf("%w: no %s header", ErrBadSignature, HeaderSignature)
	}
	if !hmac.Equal([]byte(got), []byte(Sign(secret, ts, body))) {
		return fmt.Errorf("%w: signature mismatch", ErrBadSignature)
	}
	return nil
}
