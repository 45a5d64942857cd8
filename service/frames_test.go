package service

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/switchboard-dev/switchboard/subscriptions"
)

// flatFrame is a command seen as the frame it came from, field by field, for the fuzz
// targets' checks.
type flatFrame struct {
	Type, Ref, Room, To, Name string
	Data                      json.RawMessage
}

// flat returns cmd as the frame it came from.
func flat(cmd command) flatFrame {
	f := flatFrame{Ref: cmd.reference()}
	switch cmd := cmd.(type) {
	case joinCmd:
		f.Type, f.Room = "join", cmd.room
	case leaveCmd:
		f.Type, f.Room = "leave", cmd.room
	case sendDM:
		f.Type, f.To, f.Data = "send", cmd.to, cmd.data
	case sendRoom:
		f.Type, f.Room, f.Data = "send", cmd.room, cmd.data
	case eventCmd:
		f.Type, f.Name, f.Data = "event", cmd.name, cmd.data
	case historyCmd:
		f.Type, f.Room = "history", cmd.room
	case presenceCmd:
		f.Type, f.Room = "presence", cmd.room
	}
	return f
}

func TestDecodeFrameReturnsTheCommandTheFrameAsksFor(t *testing.T) {
	for _, tc := range []struct {
		name, frame string
		want        command
	}{
		{"a join is a joinCmd", `{"type":"join","room":"lobby","ref":"1"}`, joinCmd{cmdRef{"1"}, "lobby"}},
		{"a leave is a leaveCmd", `{"type":"leave","room":"lobby"}`, leaveCmd{cmdRef{}, "lobby"}},
		{"a send to a user is a sendDM", `{"type":"send","to":"bob","data":{"text":"hi"},"ref":"3"}`,
			sendDM{cmdRef{"3"}, "bob", json.RawMessage(`{"text":"hi"}`), false}},
		{"a send to a room is a sendRoom", `{"type":"send","room":"lobby","data":[1,2,3]}`,
			sendRoom{cmdRef{}, "lobby", json.RawMessage(`[1,2,3]`), false}},
		{"data null is data", `{"type":"send","to":"bob","data":null}`, sendDM{cmdRef{}, "bob", json.RawMessage(`null`), false}},
		{"an ephemeral send to a user", `{"type":"send","to":"bob","data":1,"ephemeral":true}`, sendDM{cmdRef{}, "bob", json.RawMessage(`1`), true}},
		{"an ephemeral send to a room", `{"type":"send","room":"r","data":1,"ephemeral":true}`, sendRoom{cmdRef{}, "r", json.RawMessage(`1`), true}},
		{"ephemeral false is a stored send", `{"type":"send","room":"r","data":1,"ephemeral":false}`, sendRoom{cmdRef{}, "r", json.RawMessage(`1`), false}},
		{"a history frame has a default limit", `{"type":"history","room":"r","ref":"h"}`, historyCmd{cmdRef{"h"}, "r", 50, subscriptions.StreamID{}}},
		{"a history frame with a limit and before", `{"type":"history","room":"r","limit":7,"before":"5-1"}`, historyCmd{cmdRef{}, "r", 7, subscriptions.StreamID{MS: 5, Seq: 1}}},
		{"an event is an eventCmd", `{"type":"event","name":"order.paid","data":{"order":42},"ref":"5"}`,
			eventCmd{cmdRef{"5"}, "order.paid", json.RawMessage(`{"order":42}`)}},
		{"escaped strings are unquoted", `{"type":"join","room":"l\u006fbby","ref":"\u0031"}`, joinCmd{cmdRef{"1"}, "lobby"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodeFrame([]byte(tc.frame), 1024)
			if err != nil {
				t.Fatalf("decodeFrame(%s): %v", tc.frame, err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("decodeFrame(%s) = %#v, want %#v", tc.frame, got, tc.want)
			}
		})
	}
}

func TestDecodeFrameRefusesWithTheCodeAndRefOfTheProblem(t *testing.T) {
	for _, tc := range []struct {
		name, frame, code, ref, message string
	}{
		{"not JSON", `{`, codeBadJSON, "", "not accepted as JSON"},
		{"not an object", `[]`, codeBadJSON, "", "must be a JSON object"},
		{"no type", `{"ref":"r"}`, codeBadRequest, "r", `needs a "type"`},
		{"an unknown type", `{"type":"nope","ref":"r"}`, codeUnknownType, "r", `unknown frame type "nope"`},
		{"a type that is not a string", `{"type":1,"ref":"r"}`, codeBadRequest, "r", `"type" must be a string`},
		{"a ref that is not a string", `{"type":"join","room":"x","ref":1}`, codeBadRequest, "", `"ref" must be a string`},
		{"a ref too long", `{"type":"join","room":"x","ref":"` + strings.Repeat("r", 65) + `"}`, codeBadRequest, "", "longer than 64"},
		{"an unknown field", `{"type":"join","room":"x","ref":"r","Room":"y"}`, codeBadRequest, "r", `unknown field "Room"`},
		{"a field another type has", `{"type":"join","room":"x","data":1,"ref":"r"}`, codeBadRequest, "r", `unexpected field "data" in a join frame`},
		{"a join without a room", `{"type":"join","ref":"r"}`, codeInvalidID, "r", `"room" is required`},
		{"a leave with an invalid room", `{"type":"leave","room":"a b","ref":"r"}`, codeInvalidID, "r", `"room" must match`},
		{"a send to both", `{"type":"send","to":"a","room":"b","data":1,"ref":"r"}`, codeBadRequest, "r", "exactly one of"},
		{"a send to neither", `{"type":"send","data":1,"ref":"r"}`, codeBadRequest, "r", "exactly one of"},
		{"a send to an invalid user", `{"type":"send","to":"a b","data":1,"ref":"r"}`, codeInvalidID, "r", "not a valid user id"},
		{"a send without data", `{"type":"send","to":"bob","ref":"r"}`, codeBadRequest, "r", `a send frame needs "data"`},
		{"an event without a name", `{"type":"event","data":1,"ref":"r"}`, codeInvalidID, "r", `"name" is required`},
		{"data over the limit", `{"type":"event","name":"e","data":"` + strings.Repeat("x", 1024) + `","ref":"r"}`, codeTooLarge, "r", "larger than 1024"},
		{"ephemeral not a boolean", `{"type":"send","to":"bob","data":1,"ephemeral":"yes","ref":"r"}`, codeBadRequest, "r", `"ephemeral" must be true or false`},
		{"ephemeral on a join", `{"type":"join","room":"x","ephemeral":true,"ref":"r"}`, codeBadRequest, "r", `unexpected field "ephemeral"`},
		{"a history limit over 100", `{"type":"history","room":"x","limit":101,"ref":"r"}`, codeBadRequest, "r", `"limit" must be an integer from 1 to 100`},
		{"a history limit that is a string", `{"type":"history","room":"x","limit":"5","ref":"r"}`, codeBadRequest, "r", `"limit" must be`},
		{"a history before that is no id", `{"type":"history","room":"x","before":"x","ref":"r"}`, codeBadRequest, "r", `"before" must be a message id`},
		{"a history without a room", `{"type":"history","ref":"r"}`, codeInvalidID, "r", `"room" is required`},
		{"a limit on a send", `{"type":"send","to":"bob","data":1,"limit":1,"ref":"r"}`, codeBadRequest, "r", `unexpected field "limit"`},
		{"data nested too deep", `{"type":"send","to":"bob","data":` + nestedJSON(65) + `,"ref":"r"}`, codeBadJSON, "r", `"data" is`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd, err := decodeFrame([]byte(tc.frame), 1024)
			var fe *frameError
			if !errors.As(err, &fe) {
				t.Fatalf("decodeFrame(%s) = %#v, %v; want a frameError", tc.frame, cmd, err)
			}
			if cmd != nil || fe.code != tc.code || fe.ref != tc.ref || !strings.Contains(fe.message, tc.message) {
				t.Fatalf("decodeFrame(%s) = %#v, {ref %q code %q message %q}; want ref %q code %q message with %q",
					tc.frame, cmd, fe.ref, fe.code, fe.message, tc.ref, tc.code, tc.message)
			}
		})
	}
}

// The data of a command is its own copy: gws reuses the frame's buffer.
func TestDecodeFrameCopiesTheData(t *testing.T) {
	b := []byte(`{"type":"send","to":"bob","data":"abc"}`)
	cmd, err := decodeFrame(b, 1024)
	if err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] = 'x'
	}
	if got := string(cmd.(sendDM).data); got != `"abc"` {
		t.Fatalf("data %s after the frame's buffer changed", got)
	}
}

// BenchmarkDecodeFrame decodes a typical DM frame: the parser every client frame goes through.
func BenchmarkDecodeFrame(b *testing.B) {
	frame := []byte(`{"type":"send","to":"bob","ref":"42","data":{"text":"hello, this is a direct message of a typical size"}}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeFrame(frame, 65536); err != nil {
			b.Fatal(err)
		}
	}
}
