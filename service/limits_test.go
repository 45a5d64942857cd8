package service_test

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/internal/wsclient"
)

func TestFrameFloodIsRateLimitedThenClosedWithoutHurtingOthers(t *testing.T) {
	srv, _ := startRedis(t)
	a := startNode(t, onRedis(srv), "a", func(o *nodeOptions) {
		o.service.FrameRate = 0.01 // the flood below cannot earn new tokens
		o.service.FrameBurst = 5
	})
	flood, _ := connect(t, a, "flood")
	calm, _ := connect(t, a, "calm")

	// The burst passes, then frames are refused with rate_limited.
	for range 5 {
		must(t, flood.SendRaw([]byte(`{"type":"send","to":"calm","data":1}`)))
		next(t, flood, "ack")
		next(t, calm, "message")
	}
	must(t, flood.SendRaw([]byte(`{"type":"send","to":"calm","data":"over"}`)))
	if e := next(t, flood, "error"); e.Code != "rate_limited" {
		t.Fatalf("over the limit: %s", e.Raw)
	}
	noFrame(t, calm, 100*time.Millisecond) // the refused send was not carried out

	// Keeping on past the burst closes the connection with 1008.
	for range 20 {
		if err := flood.SendRaw([]byte(`{"type":"send","to":"calm","data":"x"}`)); err != nil {
			break
		}
	}
	select {
	case <-flood.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("a flooding connection was not closed")
	}
	if code, _ := flood.CloseCode(); code != 1008 {
		t.Fatalf("close code %d, want 1008", code)
	}
	// Others are unaffected.
	id := sendDM(t, a, "calm", `"still here"`)
	for {
		m := next(t, calm, "message")
		if m.ID == id {
			break
		}
		if string(m.Data) == `"over"` {
			t.Fatal("a rate-limited frame was delivered")
		}
	}
}

func TestConnectionsPerUserAreCapped(t *testing.T) {
	srv, _ := startRedis(t)
	a := startNode(t, onRedis(srv), "a", func(o *nodeOptions) { o.service.MaxConnsPerUser = 3 })
	for range 3 {
		connect(t, a, "many")
	}
	_, err := wsclient.Dial(a.wsURL("user=many"), wsclient.Options{})
	var refused *wsclient.ErrRefused
	if !errors.As(err, &refused) || refused.Status != http.StatusTooManyRequests {
		t.Fatalf("fourth connection: %v, want a 429 refusal", err)
	}
	// Other users are not counted against it.
	connect(t, a, "other")
}
