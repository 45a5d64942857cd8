package wsclient

import (
	"encoding/json"
	"reflect"
	"testing"
)

// slowDecode is what Dial does without FastMessages.
func slowDecode(raw []byte) Frame { return decode(raw, false) }

// checkSame fails t unless the fast path decodes raw to what json.Unmarshal gives. It
// returns whether the scanner itself took the frame (rather than falling back).
func checkSame(t *testing.T, raw []byte) bool {
	t.Helper()
	want := slowDecode(append([]byte(nil), raw...))
	got := decode(append([]byte(nil), raw...), true)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%q:\nfast %+v\njson %+v", raw, got, want)
	}
	var f Frame
	return decodeFast(append([]byte(nil), raw...), &f)
}

func TestDecodeFastMatchesUnmarshal(t *testing.T) {
	tests := []struct {
		name string
		in   string
		fast bool // the scanner takes it (else json.Unmarshal does)
	}{
		{"a room message as the server writes it", `{"type":"message","id":"1733420000000-5","history_id":"1733420000000-2","from":"u1","room":"r1","data":{"t":1733420000000000000,"s":5,"p":"xxxx"}}`, true},
		{"a big room's message", `{"type":"message","id":"1-2","big":true,"history_id":"1-2","from":"u1","room":"r1","data":{"t":1,"s":2}}`, true},
		{"a direct message's copy to its sender", `{"type":"message","id":"1-2","from":"a","to":"b","data":[1,2.5,-3e+2,"x",true,false,null,{}]}`, true},
		{"binary data", `{"type":"message","id":"1-2","from":"a","data_b64":"AAEC/w=="}`, true},
		{"an ephemeral message", `{"type":"message","ephemeral":true,"from":"a","room":"r","data":"typing"}`, true},
		{"unusual field order and spacing", " {\n\t\"data\" : { \"s\" : 1 , \"t\" : [ ] } ,\r\"room\":\"r\", \"id\":\"9-9\",\"type\":\"message\" } \n", true},
		{"missing fields", `{"type":"message"}`, true},
		{"no type", `{"id":"1-1","data":1}`, true},
		{"duplicate keys: the last wins", `{"type":"message","id":"1-1","id":"2-2","data":1,"data":{"a":2},"big":true,"big":false}`, true},
		{"null data", `{"type":"message","id":"1-1","data":null}`, true},
		{"escapes in data", `{"type":"message","id":"1-1","data":{"p":"a\"b\\c\/\b\f\n\r\t\u00e9\ud83d\ude00"}}`, true},
		{"invalid UTF-8 in data", "{\"type\":\"message\",\"data\":\"\xff\xfe\"}", true},
		{"empty strings", `{"type":"","id":"","room":""}`, true},

		{"an escaped id", `{"type":"message","id":"1-\u0031","data":1}`, false},
		{"an escaped key", `{"type":"message","\u0069d":"1-1"}`, false},
		{"non-ASCII in a string field", `{"type":"message","from":"é"}`, false},
		{"invalid UTF-8 in a string field", "{\"type\":\"message\",\"from\":\"\xff\"}", false},
		{"a key in another case", `{"Type":"message","ID":"1-1"}`, false},
		{"a welcome", `{"type":"welcome","user":"u","node":"n","last_id":"0-0","recovered":true}`, false},
		{"an ack", `{"type":"ack","ref":"1","id":"1-1","recipients":3}`, false},
		{"a history page", `{"type":"history","room":"r","messages":[{"type":"message","id":"1-1","data":1}],"more":true}`, false},
		{"a null string", `{"type":"message","id":null}`, false},
		{"big as a string", `{"type":"message","big":"true"}`, false},
		{"an empty object", `{}`, false},
		{"not an object", `[1]`, false},
		{"a number data with a leading zero", `{"data":01}`, false},
		{"a bad escape in data", `{"data":"\x"}`, false},
		{"a short unicode escape in data", `{"data":"\u12"}`, false},
		{"a control character in data", "{\"data\":\"a\x01\"}", false},
		{"a trailing comma", `{"type":"message",}`, false},
		{"an unclosed object", `{"type":"message","data":{"a":1}`, false},
		{"trailing garbage", `{"type":"message"} x`, false},
		{"a truncated literal", `{"data":tru}`, false},
		{"a bare fraction", `{"data":1.}`, false},
		{"a bare exponent", `{"data":1e}`, false},
		{"empty input", ``, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if fast := checkSame(t, []byte(tt.in)); fast != tt.fast {
				t.Errorf("scanner took it: %v, want %v", fast, tt.fast)
			}
		})
	}
}

func TestDecodeFastDataDoesNotOverwrite(t *testing.T) {
	raw := []byte(`{"data":[1],"id":"1-1"}`)
	f := decode(raw, true)
	_ = append(f.Data, 'x')
	if string(f.Raw) != `{"data":[1],"id":"1-1"}` || f.ID != "1-1" {
		t.Fatalf("appending to Data changed the frame: %q %q", f.Raw, f.ID)
	}
}

func TestDecodeFastDeepData(t *testing.T) {
	deep := make([]byte, 0, 2*maxFastDepth+40)
	deep = append(deep, `{"data":`...)
	for range maxFastDepth + 1 {
		deep = append(deep, '[')
	}
	for range maxFastDepth + 1 {
		deep = append(deep, ']')
	}
	deep = append(deep, '}')
	if checkSame(t, deep) {
		t.Fatal("the scanner took data deeper than its limit")
	}
}

func FuzzDecodeFast(f *testing.F) {
	for _, s := range []string{
		`{"type":"message","id":"1-2","history_id":"1-1","from":"u","room":"r","data":{"t":1,"s":2,"p":"xx"}}`,
		`{"type":"message","id":"1-2","big":true,"from":"a","to":"b","data_b64":"AAE="}`,
		`{"type":"message","ephemeral":false,"data":[1,-0.5e3,"\u00e9",null,true,{}]}`,
		`{"type":"welcome","last_id":"0-0","big_rooms":[{"room":"r","last_id":"1-1"}]}`,
		`{"data":"\"\\\/\b\f\n\r\t"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		checkSame(t, raw)
		var v any
		var fr Frame
		if decodeFast(append([]byte(nil), raw...), &fr) && json.Unmarshal(raw, &v) != nil {
			t.Fatalf("the scanner took invalid JSON %q", raw)
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	raw := []byte(`{"type":"message","id":"1733420000000-5","history_id":"1733420000000-2","from":"load-p0000001","room":"load-room","data":{"t":1733420000000000000,"s":5,"p":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}}`)
	for _, bc := range []struct {
		name string
		fast bool
	}{{"unmarshal", false}, {"fast", true}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = decode(append([]byte(nil), raw...), bc.fast)
			}
		})
	}
}

func TestKeepCopiesApart(t *testing.T) {
	h := &handler{fast: true}
	var kept [][]byte
	var want []string
	for i := range 100 {
		b := []byte(`{"type":"message","id":"1-` + string(rune('a'+i%26)) + `"}`)
		kept = append(kept, h.keep(b))
		want = append(want, string(b))
		b[0] = 'X' // the source buffer is reused, as gws's is
	}
	for i, k := range kept {
		_ = append(k, 'Z') // an append must not reach the next frame
		if string(k) != want[i] || cap(k) != len(k) {
			t.Fatalf("frame %d: %q (cap %d), want %q", i, k, cap(k), want[i])
		}
	}
	big := make([]byte, slabSize)
	if k := h.keep(big); len(k) != slabSize {
		t.Fatalf("a large frame kept %d bytes", len(k))
	}
}
