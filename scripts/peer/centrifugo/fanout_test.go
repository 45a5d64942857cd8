package main

import "testing"

func TestFastPub(t *testing.T) {
	payload := string(appendPayload(nil, 1733400000000000000, 42, 100))
	for _, tc := range []struct {
		name, line string
		ok         bool
		offset     uint64
	}{
		{"publication", `{"push":{"channel":"room:x","pub":{"data":` + payload + `,"offset":17}}}`, true, 17},
		{"publication with more fields", `{"push":{"channel":"room:x","pub":{"data":` + payload + `,"offset":9,"tags":{"a":"b"}}}}`, true, 9},
		{"another channel", `{"push":{"channel":"room:y","pub":{"data":` + payload + `,"offset":17}}}`, false, 0},
		{"channel prefix", `{"push":{"channel":"room:xy","pub":{"data":` + payload + `,"offset":17}}}`, false, 0},
		{"no offset", `{"push":{"channel":"room:x","pub":{"data":` + payload + `}}}`, false, 0},
		{"a reply", `{"id":2,"subscribe":{"recoverable":true,"epoch":"abc","offset":3}}`, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, offset, ok := fastPub([]byte(tc.line), "room:x")
			if ok != tc.ok || offset != tc.offset {
				t.Fatalf("fastPub = %q, %d, %v; want ok %v, offset %d", data, offset, ok, tc.ok, tc.offset)
			}
			if !ok {
				return
			}
			if string(data) != payload {
				t.Fatalf("data %q, want %q", data, payload)
			}
			sent, seq, ok := parsePayload(data)
			if !ok || sent != 1733400000000000000 || seq != 42 {
				t.Fatalf("parsePayload = %d, %d, %v", sent, seq, ok)
			}
		})
	}
}
