package service

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/switchboard-dev/switchboard/subscriptions"
)

// FuzzDecodeFrame feeds arbitrary bytes to the client frame decoder: it must never panic,
// must refuse with a frameError (never another error), and what it accepts must be a
// well-formed frame of a known type with valid ids and JSON data.
func FuzzDecodeFrame(f *testing.F) {
	for _, s := range []string{
		`{"type":"send","to":"bob","data":{"text":"hi"},"ref":"3"}`,
		`{"type":"send","room":"lobby","data":[1,2,3]}`,
		`{"type":"join","room":"lobby","ref":"1"}`,
		`{"type":"leave","room":"lobby"}`,
		`{"type":"event","name":"order.paid","data":{"order":42},"ref":"5"}`,
		`{"type":"send","to":"bob"}`, `{"type":1}`, `[]`, `null`, `"x"`, `{`, ``,
		`{"type":"send","to":"bob","data":1,"data":2}`, `{"type":"send","to":"b\u0000b","data":1}`,
		`{"type":"send","room":"r","data":1,"ephemeral":true}`, `{"type":"history","room":"r","limit":5,"before":"1-0"}`,
		`{"type":"presence","room":"r","ref":"p"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		cmd, err := decodeFrame(b, 1024)
		if err != nil {
			var fe *frameError
			if !errors.As(err, &fe) || fe.code == "" || fe.message == "" {
				t.Fatalf("refusal is not a frameError with code and message: %#v", err)
			}
			if len(fe.ref) > 64 {
				t.Fatalf("echoed ref of %d bytes", len(fe.ref))
			}
			return
		}
		fr := flat(cmd)
		switch fr.Type {
		case "join", "leave", "history", "presence":
			if !subscriptions.ValidID(fr.Room) {
				t.Fatalf("accepted %s with room %q", fr.Type, fr.Room)
			}
		case "send":
			if (fr.To == "") == (fr.Room == "") {
				t.Fatalf("accepted send with to %q and room %q", fr.To, fr.Room)
			}
			if !json.Valid(fr.Data) || len(fr.Data) > 1024 {
				t.Fatalf("accepted send with data %q", fr.Data)
			}
		case "event":
			if !subscriptions.ValidID(fr.Name) || !json.Valid(fr.Data) {
				t.Fatalf("accepted event %q with data %q", fr.Name, fr.Data)
			}
		default:
			t.Fatalf("accepted frame of type %q", fr.Type)
		}
	})
}

// FuzzDecodePayload feeds arbitrary bodies and Content-Types to the HTTP payload decoder:
// it must never panic, and whatever it accepts must encode into a valid JSON envelope.
func FuzzDecodePayload(f *testing.F) {
	for _, s := range []struct{ ct, body string }{
		{"application/json", `{"a":1}`}, {"application/json; charset=utf-8", `[1,"x"]`},
		{"text/plain", "héllo"}, {"text/plain; charset=latin1", "x"}, {"", "\x00\xff"},
		{"application/octet-stream", ""}, {"application/vnd.x+json", `"s"`}, {"text/html", "<b>\"</b>"},
		{"multipart/form-data; boundary=", "--"}, {";;", "x"}, {"application/json", `{"a":`},
	} {
		f.Add(s.ct, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, ct string, body []byte) {
		env, err := decodePayload(ct, body)
		if err != nil {
			var ae *apiError
			if !errors.As(err, &ae) || ae.status < 400 || ae.code == "" {
				t.Fatalf("refusal is not an apiError: %#v", err)
			}
			return
		}
		if env.Binary == nil && !json.Valid(env.Data) {
			t.Fatalf("accepted data that is not JSON: %q", env.Data)
		}
		if env.Binary == nil && strings.HasPrefix(ct, "text/") && !utf8.Valid(body) {
			t.Fatalf("accepted text that is not UTF-8")
		}
	})
}
