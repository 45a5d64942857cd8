package service

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
)

// maxJSONDepth is how deeply a JSON payload may nest objects and arrays. Real messages nest
// a handful of levels; a browser's JSON.stringify throws from about 5,000 and recursive
// decoders in other languages overflow their stacks long before jsontext's own 10,000, so a
// payload any reader may choke on is refused where it enters, never stored.
const maxJSONDepth = 64

// errTooDeep reports a JSON value nested deeper than maxJSONDepth.
var errTooDeep = fmt.Errorf("nested deeper than %d levels", maxJSONDepth)

// errNotUTF8 reports JSON text that is not UTF-8.
var errNotUTF8 = errors.New("the JSON text is not valid UTF-8")

// jsonReader reads JSON strictly, as jsontext does by default: no duplicate names in an
// object (a payload with duplicates means different things to different readers), names
// matched exactly, one value at the top. It adds the depth limit, which jsontext has no
// option for, by watching StackDepth as it reads token by token.
//
// The text must be UTF-8, checked once up front; escaped lone surrogates ("\ud800") stay
// accepted as they were before jsontext: they are valid JSON syntax, JSON.stringify writes
// them for a string cut in the middle of an emoji, and they pass through unchanged.
type jsonReader struct {
	dec jsontext.Decoder
	src bytes.Buffer // a bytes.Buffer, so that the decoder reads the input in place
	in  []byte
	// shallow means the input has too few brackets to nest deeper than maxJSONDepth.
	shallow bool
}

// jsonReaders keeps decoders between calls: a decoder's stacks of names and nesting are
// what a check would otherwise allocate, on the path of every message. It is scratch space,
// as in encoding/json and jsontext themselves, not shared state: nothing in it outlives a
// call.
var jsonReaders = sync.Pool{New: func() any { return new(jsonReader) }}

// newJSONReader returns a pooled reader of b, or errNotUTF8; release it when done.
func newJSONReader(b []byte) (*jsonReader, error) {
	if !utf8.Valid(b) {
		return nil, errNotUTF8
	}
	r := jsonReaders.Get().(*jsonReader)
	r.in = b
	// No value nests deeper than the brackets it opens, and most messages open a few:
	// counting them is far cheaper than reading token by token.
	r.shallow = bytes.Count(b, []byte("{"))+bytes.Count(b, []byte("[")) <= maxJSONDepth
	r.src = *bytes.NewBuffer(b)
	r.dec.Reset(&r.src, jsontext.AllowInvalidUTF8(true)) // only for escapes: see above
	return r, nil
}

// release returns r to the pool without keeping its input alive.
func (r *jsonReader) release() {
	r.in = nil
	r.src = bytes.Buffer{}
	r.dec.Reset(&r.src)
	jsonReaders.Put(r)
}

// value reads the next complete value and returns its bytes in the input. deep reports
// that it nests deeper than maxJSONDepth: then with finish the value is still read to its
// end, so that the caller may go on reading what follows it (a frame's ref, to answer the
// refusal with it); without, reading stops there.
func (r *jsonReader) value(finish bool) (v []byte, deep bool, err error) {
	if r.shallow {
		v, err := r.dec.ReadValue()
		return v, false, err
	}
	base := r.dec.StackDepth()
	start := r.dec.InputOffset()
	for {
		tok, err := r.dec.ReadToken()
		if err != nil {
			return nil, deep, err
		}
		if k := tok.Kind(); (k == '{' || k == '[') && r.dec.StackDepth()-base > maxJSONDepth {
			if !finish {
				return nil, true, nil
			}
			deep = true
		}
		if r.dec.StackDepth() == base {
			break
		}
	}
	// After an object name the offset is before the colon; a value starts past it.
	return bytes.TrimLeft(r.in[start:r.dec.InputOffset()], " \t\r\n:"), deep, nil
}

// peek returns the kind of the next token, or the error that stops reading it.
func (r *jsonReader) peek() (jsontext.Kind, error) {
	if k := r.dec.PeekKind(); k != 0 {
		return k, nil
	}
	_, err := r.dec.ReadToken() // the error PeekKind kept
	return 0, err
}

// end checks that nothing but whitespace follows the value read.
func (r *jsonReader) end() error {
	if _, err := r.dec.ReadToken(); err != io.EOF {
		if err == nil {
			return errors.New("more than one JSON value")
		}
		return err
	}
	return nil
}

// checkJSON reports why b is not one strict JSON value nested at most maxJSONDepth deep,
// or nil when it is.
func checkJSON(b []byte) error {
	r, err := newJSONReader(b)
	if err != nil {
		return err
	}
	defer r.release()
	_, deep, err := r.value(false)
	switch {
	case err != nil:
		return err
	case deep:
		return errTooDeep
	}
	return r.end()
}

// jsonProblem says in words what is wrong with JSON, for an error message: the depth, a
// duplicate name and where, or what jsontext found.
func jsonProblem(err error) string {
	var se *jsontext.SyntacticError
	switch {
	case errors.Is(err, errTooDeep):
		return err.Error()
	case errors.Is(err, jsontext.ErrDuplicateName) && errors.As(err, &se):
		return fmt.Sprintf("duplicate key at %q", se.JSONPointer)
	case err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF):
		return "unexpected end of JSON"
	}
	return strings.TrimPrefix(err.Error(), "jsontext: ")
}
