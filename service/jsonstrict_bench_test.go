package service

import (
	"strconv"
	"strings"
	"testing"
)

// benchPayload builds a JSON object of about size bytes shaped like a chat message with a
// list of items: strings, numbers, booleans, nested objects, a few levels deep.
func benchPayload(size int) []byte {
	var b strings.Builder
	b.WriteString(`{"text":"hello, this is a direct message","from":{"id":"u42","name":"Ada"},"items":[`)
	for i := 0; b.Len() < size-80; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"n":` + strconv.Itoa(i) + `,"ok":true,"tags":["a","b"],"price":12.5}`)
	}
	b.WriteString(`],"sent":1764131000000}`)
	return []byte(b.String())
}

// BenchmarkPayloadValidation measures the check every JSON payload of an HTTP message goes
// through, at a typical DM's size, a larger one and the 64 KiB limit.
func BenchmarkPayloadValidation(b *testing.B) {
	for _, size := range []struct {
		name string
		n    int
	}{{"100B", 100}, {"1KB", 1 << 10}, {"64KB", 64 << 10}} {
		body := benchPayload(size.n)
		b.Run(size.name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := decodePayload("application/json", body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestPayloadValidationAllocationBudget pins the check every JSON payload of an HTTP message
// goes through at zero allocations, on both of its paths: few brackets (one ReadValue) and
// many (token by token, watching the depth).
func TestPayloadValidationAllocationBudget(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's sync.Pool drops items; scripts/test runs this test without it")
	}
	for _, size := range []int{100, 1 << 10, 64 << 10} {
		body := benchPayload(size)
		if got := testing.AllocsPerRun(100, func() {
			if _, err := decodePayload("application/json", body); err != nil {
				t.Fatal(err)
			}
		}); got > 0 {
			t.Errorf("%d-byte payload: %.1f allocations per check, budget 0", len(body), got)
		}
	}
	deep := []byte(nestedJSON(65))
	if got := testing.AllocsPerRun(100, func() { _ = checkJSON(deep) }); got > 0 {
		t.Errorf("refusing a payload nested 65 levels: %.1f allocations, budget 0", got)
	}
}
