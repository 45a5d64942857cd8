package service

import (
	"bytes"
	"encoding/json"
	"fmt"

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

// decodeFrame parses and validates one client frame. Unknown types, unknown or missing
// fields, fields of the wrong type and invalid ids are refused with a frameError that
// carries the frame's ref when it could be read.
func decodeFrame(b []byte, maxData int) (clientFrame, error) {
	var f clientFrame
	// Fields are checked by hand so that "data":null counts as present and extra fields
	// are named in the error.
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil || raw == nil {
		return f, &frameError{code: codeBadJSON, message: "a frame must be a JSON object"}
	}
	str := func(name string, dst *string) error {
		v, ok := raw[name]
		if !ok {
			return nil
		}
		if err := json.Unmarshal(v, dst); err != nil || bytes.Equal(v, []byte("null")) {
			return &frameError{code: codeBadRequest, message: fmt.Sprintf("%q must be a string", name)}
		}
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
	for _, field := range []struct {
		name string
		dst  *string
	}{{"type", &f.Type}, {"room", &f.Room}, {"to", &f.To}, {"name", &f.Name}} {
		if err := str(field.name, field.dst); err != nil {
			err.(*frameError).ref = f.Ref
			return f, err
		}
	}
	if d, ok := raw["data"]; ok {
		f.Data = d
	}
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
	for name := range raw {
		if name == "type" || name == "ref" {
			continue
		}
		if !contains(allowed, name) {
			return fail(codeBadRequest, "unexpected field %q in a %s frame", name, f.Type)
		}
	}
	if contains(allowed, "data") {
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

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
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
