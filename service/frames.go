package service

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/switchboard-dev/switchboard/subscriptions"
)

// clientFrame is a decoded frame from a client. Which fields may be set depends on Type.
type clientFrame struct {
	Type string          `json:"type"`
	Ref  string          `json:"ref,omitempty"`
	Room string          `json:"room,omitempty"`
	To   string          `json:"to,omitempty"`
	Name string          `json:"name,omitempty"`
	Data json.RawMessage `json:"data,omitempty"`
}

// frameError is a refusal of a client frame: an error frame, the connection stays open.
type frameError struct {
	ref, code, message string
}

func (e *frameError) Error() string { return e.code + ": " + e.message }

// frameFields are the names a client frame may hold, matched exactly: "Type" or "DATA" is
// an unknown field, never taken for "type" or "data".
var frameFields = [...]string{"type", "ref", "room", "to", "name", "data"}

// decodeFrame parses and validates one client frame. Unknown types, unknown, duplicate or
// missing fields, fields of the wrong type, invalid ids and values nested deeper than
// maxJSONDepth are refused with a frameError that carries the frame's ref when it could be
// read.
func decodeFrame(b []byte, maxData int) (clientFrame, error) {
	var f clientFrame
	// The frame is read member by member, keeping each value's bytes, so that "data":null
	// counts as present, a field of the wrong type does not hide the ref, and extra fields
	// are named in the error.
	var raw [len(frameFields)][]byte
	var unknown, deep string // the first unknown name, and the first name of a too deep value
	notJSON := func(err error) (clientFrame, error) {
		return f, &frameError{code: codeBadJSON, message: "the frame is not accepted as JSON: " + jsonProblem(err)}
	}
	r, err := newJSONReader(b)
	if err != nil {
		return notJSON(err)
	}
	defer r.release()
	tok, err := r.dec.ReadToken()
	if err != nil {
		return notJSON(err)
	}
	if tok.Kind() != '{' {
		return f, &frameError{code: codeBadJSON, message: "a frame must be a JSON object"}
	}
	for r.dec.PeekKind() != '}' {
		tok, err := r.dec.ReadToken()
		if err != nil {
			return notJSON(err)
		}
		name := tok.String()
		v, tooDeep, err := r.value(true)
		if err != nil {
			return notJSON(err)
		}
		if tooDeep && deep == "" {
			deep = name
		}
		if i := slices.Index(frameFields[:], name); i >= 0 {
			raw[i] = v
		} else if unknown == "" {
			unknown = name
		}
	}
	if _, err := r.dec.ReadToken(); err != nil {
		return notJSON(err)
	}
	if err := r.end(); err != nil {
		return notJSON(err)
	}
	field := func(name string) []byte { return raw[slices.Index(frameFields[:], name)] }
	str := func(name string, dst *string) error {
		v := field(name)
		if v == nil {
			return nil
		}
		if v[0] != '"' {
			return &frameError{code: codeBadRequest, message: fmt.Sprintf("%q must be a string", name)}
		}
		s, err := jsontext.AppendUnquote(nil, v)
		if err != nil { // the reader has validated the string already
			return &frameError{code: codeBadJSON, message: fmt.Sprintf("%q is not a valid JSON string", name)}
		}
		*dst = string(s)
		return nil
	}
	if err := str("ref", &f.Ref); err != nil {
		return f, err
	}
	if len(f.Ref) > 64 {
		return f, &frameError{code: codeBadRequest, message: `"ref" is longer than 64 characters`}
	}
	fail := func(code, format string, args ...any) (clientFrame, error) {
		return f, &frameError{ref: f.Ref, code: code, message: fmt.Sprintf(format, args...)}
	}
	if deep != "" {
		// Whichever field holds it: the frame is one JSON document, read by the same parsers.
		return fail(codeBadJSON, "%q is %s", deep, errTooDeep)
	}
	if unknown != "" {
		return fail(codeBadRequest, "unknown field %q (names are matched exactly)", unknown)
	}
	for _, field := range []struct {
		name string
		dst  *string
	}{{"type", &f.Type}, {"room", &f.Room}, {"to", &f.To}, {"name", &f.Name}} {
		if err := str(field.name, field.dst); err != nil {
			err.(*frameError).ref = f.Ref
			return f, err
		}
	}
	// A copy: the frame's bytes go back to gws's pool when OnMessage returns, and the data
	// may outlive it in a pipeline or the event queue.
	f.Data = bytes.Clone(field("data"))
	var allowed []string
	switch f.Type {
	case "join", "leave":
		allowed = []string{"room"}
		if err := requireID("room", f.Room); err != nil {
			return fail(codeInvalidID, "%s", err)
		}
	case "send":
		allowed = []string{"to", "room", "data"}
		switch {
		case (f.To == "") == (f.Room == ""):
			return fail(codeBadRequest, `a send needs exactly one of "to" and "room"`)
		case f.To != "" && !subscriptions.ValidID(f.To):
			return fail(codeInvalidID, `"to" is not a valid user id`)
		case f.Room != "" && !subscriptions.ValidID(f.Room):
			return fail(codeInvalidID, `"room" is not a valid room name`)
		}
	case "event":
		allowed = []string{"name", "data"}
		if err := requireID("name", f.Name); err != nil {
			return fail(codeInvalidID, "%s", err)
		}
	case "":
		return fail(codeBadRequest, `a frame needs a "type"`)
	default:
		return fail(codeUnknownType, "unknown frame type %q", f.Type)
	}
	for i, name := range frameFields {
		if raw[i] != nil && name != "type" && name != "ref" && !slices.Contains(allowed, name) {
			return fail(codeBadRequest, "unexpected field %q in a %s frame", name, f.Type)
		}
	}
	if slices.Contains(allowed, "data") {
		if f.Data == nil {
			return fail(codeBadRequest, `a %s frame needs "data"`, f.Type)
		}
		if len(f.Data) > maxData {
			return fail(codeTooLarge, "data is larger than %d bytes", maxData)
		}
	}
	return f, nil
}

func requireID(field, v string) error {
	if v == "" {
		return fmt.Errorf("%q is required", field)
	}
	if !subscriptions.ValidID(v) {
		return fmt.Errorf("%q must match ^[A-Za-z0-9._@+-]{1,128}$", field)
	}
	return nil
}

// Server frames. Message frames come encoded from the hub; these are the others.

type welcomeFrame struct {
	Type      string `json:"type"`
	User      string `json:"user"`
	Node      string `json:"node"`
	Recovered *bool  `json:"recovered,omitempty"`
	LastID    string `json:"last_id"`
}

type ackFrame struct {
	Type       string `json:"type"`
	Ref        string `json:"ref,omitempty"`
	ID         string `json:"id,omitempty"`
	Recipients *int   `json:"recipients,omitempty"`
}

type errorFrame struct {
	Type    string `json:"type"`
	Ref     string `json:"ref,omitempty"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

func encodeFrame(v any) []byte {
	b, _ := json.Marshal(v) // frame structs always encode
	return b
}
