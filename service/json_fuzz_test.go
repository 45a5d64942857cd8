package service

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"unicode/utf8"
)

// jsonOracle reads b another way than the code under test, with encoding/json's tokenizer:
// whether it is one JSON value in UTF-8, whether an object in it repeats a name, and how
// deep it nests.
func jsonOracle(b []byte) (valid, dup bool, depth int) {
	if !utf8.Valid(b) || !json.Valid(b) {
		return false, false, 0
	}
	type level struct {
		object bool
		names  map[string]bool
		key    bool // the next string or value in this object is a name
	}
	var stack []level
	dec := json.NewDecoder(bytes.NewReader(b))
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return true, dup, depth
		}
		if err != nil {
			return false, dup, depth
		}
		top := len(stack) - 1
		if d, isDelim := tok.(json.Delim); isDelim {
			switch d {
			case '{', '[':
				if top >= 0 && stack[top].object {
					stack[top].key = true // the value ends here: a name comes next
				}
				stack = append(stack, level{object: d == '{', names: map[string]bool{}, key: d == '{'})
				depth = max(depth, len(stack))
			default:
				stack = stack[:top]
			}
			continue
		}
		if top < 0 || !stack[top].object {
			continue
		}
		if stack[top].key {
			name := tok.(string)
			dup = dup || stack[top].names[name]
			stack[top].names[name] = true
		}
		stack[top].key = !stack[top].key
	}
}

// nestedJSON returns JSON nested depth levels, arrays and objects alternating.
func nestedJSON(depth int) string {
	var open, closing strings.Builder
	for i := range depth {
		if i%2 == 0 {
			open.WriteString(`[`)
		} else {
			open.WriteString(`{"k":`)
		}
	}
	for i := depth - 1; i >= 0; i-- {
		if i%2 == 0 {
			closing.WriteString(`]`)
		} else {
			closing.WriteString(`}`)
		}
	}
	return open.String() + "1" + closing.String()
}

// strictSeeds are inputs at the edges: exactly at the depth limit and one past it, with many
// brackets (the token-by-token path) and few (the fast path), duplicate names plain, escaped
// and nested, names that differ in case only, and lone surrogates.
func strictSeeds() []string {
	return []string{
		nestedJSON(64), nestedJSON(65), nestedJSON(63), nestedJSON(200),
		strings.Repeat("[", 64) + strings.Repeat("]", 64), strings.Repeat("[", 65) + strings.Repeat("]", 65),
		`[` + strings.Repeat(`[],`, 70) + `[]]`, // 71 brackets, depth 2
		strings.Repeat(`{"a":`, 65) + `1` + strings.Repeat(`}`, 65),
		`{"a":1,"a":2}`, `{"a":1,"\u0061":2}`, `{"a":{"b":1,"b":1}}`, `[{"a":1},{"a":1}]`,
		`{"a":1,"A":2}`, `{"\ud800":1,"\udc00":2}`, `"\ud800"`, `{"a":"[[[["}`,
		`{} {}`, `1 x`, ``, ` `, `{"a":1,}`, `[1,]`, "\"\xff\"",
	}
}

// FuzzCheckJSON checks the strict check against the oracle: it accepts exactly what the
// oracle accepts, and refuses valid JSON as too deep only when it nests too deep.
func FuzzCheckJSON(f *testing.F) {
	for _, s := range strictSeeds() {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		err := checkJSON(b)
		valid, dup, depth := jsonOracle(b)
		if ok := valid && !dup && depth <= maxJSONDepth; (err == nil) != ok {
			t.Fatalf("checkJSON(%q) = %v; the oracle says valid %v, duplicate names %v, depth %d", b, err, valid, dup, depth)
		}
		// Reading stops at the 65th level, before the end: a broken document that opens that
		// many levels is refused as too deep, which the oracle cannot tell.
		if errors.Is(err, errTooDeep) && valid && depth <= maxJSONDepth {
			t.Fatalf("checkJSON(%q) refused as too deep at depth %d", b, depth)
		}
	})
}

// FuzzDecodeFrameIsStrict: whatever frame decodeFrame accepts has no duplicate names, only
// exact known ones at the top, and data within the depth limit.
func FuzzDecodeFrameIsStrict(f *testing.F) {
	for _, s := range []string{
		`{"type":"send","to":"bob","data":` + nestedJSON(64) + `}`,
		`{"type":"send","to":"bob","data":` + nestedJSON(65) + `,"ref":"r"}`,
		`{"type":"event","name":"e","data":` + nestedJSON(64) + `}`,
		`{"type":"send","to":"bob","to":"eve","data":1}`, `{"type":"send","to":"bob","data":{"a":1,"a":2}}`,
		`{"Type":"send","to":"bob","data":1}`, `{"type":"send","TO":"eve","to":"bob","data":1}`,
		`{"type":"send","to":"bob","Data":1}`, `{"type":"send","to":"bob","data":1,"\u0064ata":2}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		cmd, err := decodeFrame(b, 1<<20)
		if err != nil {
			return
		}
		fr := flat(cmd)
		// The frame nests one level more than its data.
		if valid, dup, depth := jsonOracle(b); !valid || dup || depth > maxJSONDepth+1 {
			t.Fatalf("accepted frame %q: valid %v, duplicate names %v, depth %d", b, valid, dup, depth)
		}
		if _, _, depth := jsonOracle(fr.Data); depth > maxJSONDepth {
			t.Fatalf("accepted frame %q with data nested %d levels", b, depth)
		}
		var names map[string]json.RawMessage
		if err := json.Unmarshal(b, &names); err != nil {
			t.Fatalf("accepted frame %q that is not an object: %v", b, err)
		}
		for name := range names {
			switch name {
			case "type", "ref", "room", "to", "name", "data":
			default:
				t.Fatalf("accepted frame %q with field %q", b, name)
			}
		}
		if fr.Data != nil {
			if err := checkJSON(fr.Data); err != nil {
				t.Fatalf("accepted frame %q whose data fails the check: %v", b, err)
			}
		}
	})
}

// FuzzDecodeBatch: a batch body is refused with an apiError or accepted with every item's
// data strict, and an accepted body has no duplicate names anywhere.
func FuzzDecodeBatch(f *testing.F) {
	for _, s := range []string{
		`{"messages":[{"user":"bob","data":1}]}`,
		`{"messages":[{"user":"bob","data":` + nestedJSON(64) + `}]}`,
		`{"messages":[{"user":"bob","data":` + nestedJSON(65) + `}]}`,
		`{"messages":[{"user":"bob","USER":"eve","data":1}]}`, `{"messages":[{"user":"bob","user":"eve","data":1}]}`,
		`{"messages":[{"user":"bob","data":{"a":1,"a":2}}]}`, `{"messages":[],"messages":[{"user":"bob","data":1}]}`,
		`{"Messages":[{"user":"bob","data":1}]}`, `{"messages":[{"room":"r","from":"svc","data_b64":"AA=="}]}`,
		`{"messages":[{"user":"bob","data_b64":null}]}`, `{"messages":null}`, `{"messages":[1]}`,
	} {
		f.Add([]byte(s))
	}
	s := &Server{cfg: Config{MaxMessageBytes: 1 << 20}}
	f.Fuzz(func(t *testing.T, b []byte) {
		items, err := s.decodeBatch(b)
		if err != nil {
			var ae *apiError
			if !errors.As(err, &ae) || ae.status < 400 || ae.code == "" || ae.message == "" {
				t.Fatalf("refusal is not an apiError: %#v", err)
			}
			return
		}
		if len(items) == 0 || len(items) > maxBatchItems {
			t.Fatalf("accepted %d items", len(items))
		}
		// The body nests three levels more than the items' data.
		if valid, dup, depth := jsonOracle(b); !valid || dup || depth > maxJSONDepth+3 {
			t.Fatalf("accepted batch %q: valid %v, duplicate names %v, depth %d", b, valid, dup, depth)
		}
		for i, it := range items {
			if it.env.Binary == nil {
				if err := checkJSON(it.env.Data); err != nil {
					t.Fatalf("accepted item %d with data %q: %v", i, it.env.Data, err)
				}
			}
		}
	})
}
