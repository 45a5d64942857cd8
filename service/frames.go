package service

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/switchboard-dev/switchboard/subscriptions"
)

// command is a valid client frame, decoded into what it asks for: a joinCmd, leaveCmd,
// sendDM, sendRoom, eventCmd, refreshCmd, rpcCmd, historyCmd or presenceCmd, and nothing
// else (its method is unexported).
type command interface {
	// reference returns the frame's "ref", echoed in its ack or error ("" without one).
	reference() string
}

// cmdRef is the "ref" every command may carry.
type cmdRef struct{ ref string }

func (r cmdRef) reference() string { return r.ref }

// joinCmd asks to join a room ({"type":"join","room":...}).
type joinCmd struct {
	cmdRef
	room string
}

// leaveCmd asks to leave a room ({"type":"leave","room":...}).
type leaveCmd struct {
	cmdRef
	room string
}

// sendDM sends data to a user ({"type":"send","to":...,"data":...}).
type sendDM struct {
	cmdRef
	to   string
	data json.RawMessage
	// ephemeral: published only, never stored, no id ("ephemeral":true).
	ephemeral bool
}

// sendRoom sends data to a room's members ({"type":"send","room":...,"data":...}).
type sendRoom struct {
	cmdRef
	room      string
	data      json.RawMessage
	ephemeral bool
}

// eventCmd emits a client event to the backend ({"type":"event","name":...,"data":...}).
type eventCmd struct {
	cmdRef
	name string
	data json.RawMessage
}

// refreshCmd replaces the connection's token ({"type":"refresh","token":...}).
type refreshCmd struct {
	cmdRef
	token string
}

// rpcCmd calls the backend's RPC hook ({"type":"rpc","method":...,"data":...}); its answer
// comes later, as a result frame with the same ref.
type rpcCmd struct {
	cmdRef
	method string
	data   json.RawMessage
}

// frameError is a refusal of a client frame: an error frame, the connection stays open.
type frameError struct {
	ref, code, message string
}

func (e *frameError) Error() string { return e.code + ": " + e.message }

// frameFields are the names a client frame may hold, matched exactly: "Type" or "DATA" is
// an unknown field, never taken for "type" or "data".
var frameFields = [...]string{"type", "ref", "room", "to", "name", "data", "token", "method", "limit", "before", "ephemeral"}

// Indexes of frameFields.
const (
	fieldType = iota
	fieldRef
	fieldRoom
	fieldTo
	fieldName
	fieldData
	fieldToken
	fieldMethod
	fieldLimit
	fieldBefore
	fieldEphemeral
)

// rawFrame is a client frame read member by member: each known field's value as it was
// sent (nil when absent), so that "data":null counts as present, a field of the wrong type
// does not hide the ref, and extra fields are named in the error.
type rawFrame struct {
	fields  [len(frameFields)][]byte
	unknown string // the first unknown name
	deep    string // the first name of a value nested too deep
}

// decodeFrame parses and validates one client frame into its command. Unknown types,
// unknown, duplicate or missing fields, fields of the wrong type, invalid ids and values
// nested deeper than maxJSONDepth are refused with a frameError that carries the frame's
// ref when it could be read.
func decodeFrame(b []byte, maxData int) (command, error) {
	r, err := newJSONReader(b)
	if err != nil {
		return nil, notJSON(err)
	}
	// Released when the command is made: the values read may point into its buffers.
	defer r.release()
	raw, err := readFrame(r)
	if err != nil {
		return nil, err
	}
	var ref string
	if err := raw.str(fieldRef, &ref); err != nil {
		return nil, err
	}
	if len(ref) > 64 {
		return nil, &frameError{code: codeBadRequest, message: `"ref" is longer than 64 characters`}
	}
	fail := func(code, format string, args ...any) (command, error) {
		return nil, &frameError{ref: ref, code: code, message: fmt.Sprintf(format, args...)}
	}
	if raw.deep != "" {
		// Whichever field holds it: the frame is one JSON document, read by the same parsers.
		return fail(codeBadJSON, "%q is %s", raw.deep, errTooDeep)
	}
	if raw.unknown != "" {
		return fail(codeBadRequest, "unknown field %q (names are matched exactly)", raw.unknown)
	}
	var f frameStrings
	for _, field := range [...]struct {
		i   int
		dst *string
	}{{fieldType, &f.typ}, {fieldRoom, &f.room}, {fieldTo, &f.to}, {fieldName, &f.name}, {fieldToken, &f.token}, {fieldMethod, &f.method}, {fieldBefore, &f.before}} {
		if err := raw.str(field.i, field.dst); err != nil {
			err.ref = ref
			return nil, err
		}
	}
	cmd, fe := raw.command(cmdRef{ref}, f, maxData)
	if fe != nil {
		fe.ref = ref
		return nil, fe
	}
	return cmd, nil
}

// frameStrings are the string fields of a frame besides its ref ("" when absent).
type frameStrings struct{ typ, room, to, name, token, method, before string }

// command validates a frame whose fields are read and makes its command; a refusal is
// returned without the ref, which the caller sets.
func (raw *rawFrame) command(cr cmdRef, f frameStrings, maxData int) (command, *frameError) {
	fail := func(code, format string, args ...any) (command, *frameError) {
		return nil, &frameError{code: code, message: fmt.Sprintf(format, args...)}
	}
	if read := readCommands[f.typ]; read != nil {
		return read(raw, cr, f)
	}
	var allowed []int
	switch f.typ {
	case "join", "leave":
		allowed = []int{fieldRoom}
		if err := requireID("room", f.room); err != nil {
			return fail(codeInvalidID, "%s", err)
		}
	case "send":
		allowed = []int{fieldTo, fieldRoom, fieldData, fieldEphemeral}
		switch {
		case (f.to == "") == (f.room == ""):
			return fail(codeBadRequest, `a send needs exactly one of "to" and "room"`)
		case f.to != "" && !subscriptions.ValidID(f.to):
			return fail(codeInvalidID, `"to" is not a valid user id`)
		case f.room != "" && !subscriptions.ValidID(f.room):
			return fail(codeInvalidID, `"room" is not a valid room name`)
		}
	case "event":
		allowed = []int{fieldName, fieldData}
		if err := requireID("name", f.name); err != nil {
			return fail(codeInvalidID, "%s", err)
		}
	case "rpc":
		allowed = []int{fieldMethod, fieldData}
		if err := requireID("method", f.method); err != nil {
			return fail(codeInvalidID, "%s", err)
		}
		if cr.ref == "" {
			return fail(codeBadRequest, `an rpc frame needs a "ref": its result carries it`)
		}
	case "refresh":
		allowed = []int{fieldToken}
		if f.token == "" {
			return fail(codeBadRequest, `a refresh frame needs a "token"`)
		}
	case "":
		return fail(codeBadRequest, `a frame needs a "type"`)
	default:
		return fail(codeUnknownType, "unknown frame type %q", f.typ)
	}
	if fe := raw.onlyFields(f.typ, allowed...); fe != nil {
		return nil, fe
	}
	switch f.typ {
	case "join":
		return joinCmd{cr, f.room}, nil
	case "leave":
		return leaveCmd{cr, f.room}, nil
	case "refresh":
		return refreshCmd{cr, f.token}, nil
	}
	return raw.dataCommand(cr, f, maxData)
}

// dataCommand makes the command of a send, an event or an rpc: all carry data (an rpc's
// is optional: null).
func (raw *rawFrame) dataCommand(cr cmdRef, f frameStrings, maxData int) (command, *frameError) {
	data := raw.fields[fieldData]
	if data == nil && f.typ == "rpc" {
		data = []byte("null")
	}
	if data == nil {
		return nil, &frameError{code: codeBadRequest, message: fmt.Sprintf(`a %s frame needs "data"`, f.typ)}
	}
	if len(data) > maxData {
		return nil, &frameError{code: codeTooLarge, message: fmt.Sprintf("data is larger than %d bytes", maxData)}
	}
	// A copy: the frame's bytes go back to gws's pool when OnMessage returns, and the data
	// may outlive it in a pipeline or the event queue.
	data = bytes.Clone(data)
	switch {
	case f.typ == "event":
		return eventCmd{cr, f.name, data}, nil
	case f.typ == "rpc":
		return rpcCmd{cr, f.method, data}, nil
	}
	ephemeral, fe := raw.flag(fieldEphemeral)
	if fe != nil {
		return nil, fe
	}
	if f.to != "" {
		return sendDM{cr, f.to, data, ephemeral}, nil
	}
	return sendRoom{cr, f.room, data, ephemeral}, nil
}

// notJSON is the refusal of a frame the JSON reader refused.
func notJSON(err error) *frameError {
	return &frameError{code: codeBadJSON, message: "the frame is not accepted as JSON: " + jsonProblem(err)}
}

// readFrame reads a JSON object from r, keeping the values of the known fields.
func readFrame(r *jsonReader) (raw rawFrame, _ error) {
	tok, err := r.dec.ReadToken()
	if err != nil {
		return raw, notJSON(err)
	}
	if tok.Kind() != '{' {
		return raw, &frameError{code: codeBadJSON, message: "a frame must be a JSON object"}
	}
	for r.dec.PeekKind() != '}' {
		tok, err := r.dec.ReadToken()
		if err != nil {
			return raw, notJSON(err)
		}
		name := tok.String()
		v, tooDeep, err := r.value(true)
		if err != nil {
			return raw, notJSON(err)
		}
		if tooDeep && raw.deep == "" {
			raw.deep = name
		}
		if i := slices.Index(frameFields[:], name); i >= 0 {
			raw.fields[i] = v
		} else if raw.unknown == "" {
			raw.unknown = name
		}
	}
	if _, err := r.dec.ReadToken(); err != nil {
		return raw, notJSON(err)
	}
	if err := r.end(); err != nil {
		return raw, notJSON(err)
	}
	return raw, nil
}

// str unquotes field i into dst when the frame has it; a value that is not a string is
// refused (without a ref: the caller sets it).
func (raw *rawFrame) str(i int, dst *string) *frameError {
	v := raw.fields[i]
	if v == nil {
		return nil
	}
	if v[0] != '"' {
		return &frameError{code: codeBadRequest, message: fmt.Sprintf("%q must be a string", frameFields[i])}
	}
	s, err := jsontext.AppendUnquote(nil, v)
	if err != nil { // the reader has validated the string already
		return &frameError{code: codeBadJSON, message: fmt.Sprintf("%q is not a valid JSON string", frameFields[i])}
	}
	*dst = string(s)
	return nil
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
	// Rooms are the user's rooms, so that a client with a token alone can list them.
	Rooms []string `json:"rooms"`
	// BigRooms are the user's big rooms and where each starts (docs/protocol.md, "Big
	// rooms"); absent when none.
	BigRooms []subscriptions.BigRoom `json:"big_rooms,omitempty"`
}

// expiringFrame warns that the connection's token expires in In seconds: the client
// answers with a refresh frame, or the connection is closed with 4003.
type expiringFrame struct {
	Type string `json:"type"`
	In   int    `json:"in"`
}

type ackFrame struct {
	Type       string `json:"type"`
	Ref        string `json:"ref,omitempty"`
	ID         string `json:"id,omitempty"`
	Recipients *int   `json:"recipients,omitempty"`
	// CopyID is the id of a direct message's copy in the sender's own stream; Copy is
	// false when that copy failed while the recipient's message was stored.
	CopyID string `json:"copy_id,omitempty"`
	Copy   *bool  `json:"copy,omitempty"`
	// HistoryID is a room message's id in the room's history.
	HistoryID string `json:"history_id,omitempty"`
	// Replicated is false when --wait-replicas replicas did not confirm the message in
	// time: delivered and stored on the master only, as for the HTTP sends' answer.
	Replicated *bool `json:"replicated,omitempty"`
}

type errorFrame struct {
	Type    string `json:"type"`
	Ref     string `json:"ref,omitempty"`
	Code    string `json:"code"`
	Message string `json:"message"`
	// Status is the backend's HTTP status of a failed rpc (rpc_failed).
	Status int `json:"status,omitempty"`
}

// resultFrame answers an rpc frame with the backend's answer.
type resultFrame struct {
	Type string          `json:"type"`
	Ref  string          `json:"ref"`
	Data json.RawMessage `json:"data"`
}

func encodeFrame(v any) []byte {
	b, _ := json.Marshal(v) // frame structs always encode
	return b
}
