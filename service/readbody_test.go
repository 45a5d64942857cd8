package service

import (
	"bytes"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
)

const smallDM = `{"text":"hello, how are you?","n":1}`

// BenchmarkReadBodySmallDM measures the hot path of the API: a small JSON body with a
// Content-Length.
func BenchmarkReadBodySmallDM(b *testing.B) {
	sr := strings.NewReader(smallDM)
	r := httptest.NewRequest("POST", "/v1/users/bob/messages", sr)
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		sr.Reset(smallDM)
		r.ContentLength = int64(len(smallDM))
		if _, err := readBody(w, r, 65536); err != nil {
			b.Fatal(err)
		}
	}
}

// A small body with a Content-Length costs one allocation of its size, as before bodies
// were read incrementally.
func TestReadBodyOfASmallDMAllocatesOnce(t *testing.T) {
	sr := strings.NewReader(smallDM)
	r := httptest.NewRequest("POST", "/v1/users/bob/messages", sr)
	w := httptest.NewRecorder()
	var got []byte
	allocs := testing.AllocsPerRun(200, func() {
		sr.Reset(smallDM)
		r.ContentLength = int64(len(smallDM))
		got, _ = readBody(w, r, 65536)
	})
	if string(got) != smallDM {
		t.Fatalf("read %q, want %q: the budget measured nothing", got, smallDM)
	}
	if allocs > 1 {
		t.Fatalf("%v allocations per small body, want at most 1", allocs)
	}
}

// readBody returns exactly the body, whatever the declared length and the sizes the body
// arrives in, and refuses bodies over the limit.
func TestReadBodyGrowsAsBytesArrive(t *testing.T) {
	const max = 100 << 10
	cases := []struct {
		name    string
		size    int
		chunked bool
		ok      bool
	}{
		{"an empty body", 0, false, true},
		{"a body of one byte", 1, false, true},
		{"a body of exactly the first chunk", bodyFirstChunk, false, true},
		{"a body one byte past the first chunk", bodyFirstChunk + 1, false, true},
		{"a body of exactly the limit", max, false, true},
		{"a chunked empty body", 0, true, true},
		{"a chunked body past the first buffer", bodyChunkedStart*3 + 7, true, true},
		{"a chunked body of exactly the limit", max, true, true},
		{"a chunked body one byte over the limit", max + 1, true, false},
		{"a chunked body far over the limit", 4 * max, true, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			want := bytes.Repeat([]byte("0123456789"), tc.size/10+1)[:tc.size]
			r := httptest.NewRequest("POST", "/v1/messages", io.MultiReader(bytes.NewReader(want), eofReader{}))
			r.ContentLength = int64(tc.size)
			if tc.chunked {
				r.ContentLength = -1
			}
			got, err := readBody(httptest.NewRecorder(), r, max)
			if !tc.ok {
				if ae, ok := err.(*apiError); !ok || ae.code != codeTooLarge {
					t.Fatalf("error %v, want too_large", err)
				}
				return
			}
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("read %d bytes (%v), want the %d-byte body", len(got), err, tc.size)
			}
		})
	}
}

// eofReader ends a body in a read of its own, as a network body often does.
type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }
