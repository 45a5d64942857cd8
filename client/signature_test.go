package client_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/client"
	"github.com/switchboard-dev/switchboard/events"
)

// signed is a webhook request as Switchboard sends it: signed with events.Sign at ts.
func signed(secret string, ts time.Time, body string) *http.Request {
	r := httptest.NewRequest("POST", "/events", strings.NewReader(body))
	stamp := strconv.FormatInt(ts.Unix(), 10)
	r.Header.Set(client.HeaderTimestamp, stamp)
	r.Header.Set(client.HeaderSignature, events.Sign(secret, stamp, []byte(body)))
	return r
}

func TestVerifyRequest(t *testing.T) {
	const secret = "s3cret"
	body := `{"events":[{"id":"e1","type":"room.joined","user":"bob","node":"n1","time":"2026-12-05T08:00:00.123Z","room":"lobby","by":"api"},` +
		`{"id":"e2","type":"client.event","user":"bob","node":"n1","time":"2026-12-05T08:00:01.000Z","name":"order.paid","data":{"order":42}}]}`
	got, err := client.VerifyRequest(secret, signed(secret, time.Now(), body), 1<<20)
	if err != nil || string(got) != body {
		t.Fatalf("a well signed request: %v, body %q", err, got)
	}
	evs, err := client.DecodeEvents(got)
	must(t, err)
	if len(evs) != 2 || evs[0].Room != "lobby" || evs[0].By != "api" || evs[1].Name != "order.paid" ||
		string(evs[1].Data) != `{"order":42}` || evs[0].Time.UnixMilli()%1000 != 123 {
		t.Fatalf("events %+v", evs)
	}

	tampered := signed(secret, time.Now(), body)
	tampered.Body = httptest.NewRequest("POST", "/", strings.NewReader(strings.Replace(body, "bob", "eve", 1))).Body
	unsigned := signed(secret, time.Now(), body)
	unsigned.Header.Del(client.HeaderSignature)
	for name, r := range map[string]*http.Request{
		"another secret":    signed("other", time.Now(), body),
		"a tampered body":   tampered,
		"no signature":      unsigned,
		"signed 10 min ago": signed(secret, time.Now().Add(-10*time.Minute), body),
		"signed 10 min on":  signed(secret, time.Now().Add(10*time.Minute), body),
	} {
		if _, err := client.VerifyRequest(secret, r, 1<<20); !errors.Is(err, client.ErrBadSignature) {
			t.Errorf("%s: %v, want ErrBadSignature", name, err)
		}
	}
	if _, err := client.VerifyRequest(secret, signed(secret, time.Now(), body), int64(len(body)-1)); err == nil {
		t.Error("a body over the limit passed")
	}
	// VerifySignature with no tolerance checks only the signature.
	old := signed(secret, time.Unix(1000, 0), body)
	if err := client.VerifySignature(secret, old.Header, []byte(body), time.Now(), 0); err != nil {
		t.Errorf("without a tolerance: %v", err)
	}
}
