package main

import (
	"context"
	"encoding/json"
	"testing"
	"time"
)

func TestPayloadRoundTrip(t *testing.T) {
	for _, size := range []int{0, 10, 40, 100, 4096} {
		sent := time.Now().UnixNano()
		b := appendPayload(nil, sent, 123456, size)
		if !json.Valid(b) {
			t.Fatalf("size %d: not JSON: %s", size, b)
		}
		if size >= 60 && len(b) != size {
			t.Errorf("size %d: payload is %d bytes", size, len(b))
		}
		gotSent, gotSeq, ok := parsePayload(b)
		if !ok || gotSent != sent || gotSeq != 123456 {
			t.Errorf("size %d: parsed %d %d %v", size, gotSent, gotSeq, ok)
		}
	}
}

// A payload some proxy re-encoded is still read, by the slow path.
func TestParsePayloadFallsBackToJSON(t *testing.T) {
	tests := []struct {
		in        string
		sent, seq int64
		ok        bool
	}{
		{`{"s":7, "t":99}`, 99, 7, true},
		{`{ "t": 5, "s": 6, "p": "x" }`, 5, 6, true},
		{`{"t":5}`, 0, -1, false},
		{`"text"`, 0, -1, false},
		{`{"t":99999999999999999999999,"s":1}`, 0, -1, false},
	}
	for _, tt := range tests {
		sent, seq, ok := parsePayload([]byte(tt.in))
		if sent != tt.sent || seq != tt.seq || ok != tt.ok {
			t.Errorf("%s: got %d %d %v, want %d %d %v", tt.in, sent, seq, ok, tt.sent, tt.seq, tt.ok)
		}
	}
}

func TestStreamIDsCompareAsTheServerOrdersThem(t *testing.T) {
	a, ok1 := parseStreamID("1732483200000-9")
	b, ok2 := parseStreamID("1732483200000-10")
	c, ok3 := parseStreamID("1732483200001-0")
	if !ok1 || !ok2 || !ok3 || !b.after(a) || !c.after(b) || a.after(a) || a.String() != "1732483200000-9" {
		t.Fatalf("%v %v %v", a, b, c)
	}
	for _, bad := range []string{"", "12", "a-1", "1-", "-1", "1-2-3"} {
		if _, ok := parseStreamID(bad); ok {
			t.Errorf("%q parsed", bad)
		}
	}
	if id, ok := idFromAnswer([]byte(`{"id":"5-1"}` + "\n")); !ok || id != "5-1" {
		t.Errorf("idFromAnswer: %q %v", id, ok)
	}
}

func TestPacerStopsAtCount(t *testing.T) {
	p := newPacer(time.Now(), time.Minute, 0, 5)
	timer := time.NewTimer(time.Hour)
	var got []int64
	for {
		seq, ok := p.take(context.Background(), timer)
		if !ok {
			break
		}
		got = append(got, seq)
	}
	if len(got) != 5 || got[4] != 4 {
		t.Fatalf("took %v", got)
	}
}

// At a rate, message k is due k/rate after the start, and nothing is due after the end.
func TestPacerSpacesMessagesAtTheRate(t *testing.T) {
	start := time.Now()
	p := newPacer(start, 100*time.Millisecond, 100, 0)
	timer := time.NewTimer(time.Hour)
	n := 0
	for {
		seq, ok := p.take(context.Background(), timer)
		if !ok {
			break
		}
		if early := start.Add(time.Duration(seq) * 10 * time.Millisecond).Sub(time.Now()); early > 0 {
			t.Fatalf("message %d handed out %s early", seq, early)
		}
		n++
	}
	// 10 are due within the 100 ms; a slow machine may reach the end before the last.
	if n > 10 || n < 5 {
		t.Fatalf("%d messages in 100ms at 100/s, want 10", n)
	}
}

func TestPacerStopsWhenInterrupted(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	p := newPacer(time.Now(), time.Minute, 1, 0)
	timer := time.NewTimer(time.Hour)
	if _, ok := p.take(ctx, timer); ok { // seq 0 is due now, but the run is over
		t.Fatal("took a message after an interrupt")
	}
}
