package client

import (
	"encoding/json"
	"fmt"
)

// Payload is a message's content and the Content-Type that tells the server its form: JSON
// is delivered as data, text as a JSON string in data, bytes as data_b64. Build one with
// JSON, RawJSON, Text or Bytes.
type Payload struct {
	contentType string
	body        []byte
	err         error // from JSON: returned by the call that sends the payload
}

// JSON is v encoded as JSON (encoding/json), delivered as data. An encoding error is
// returned by the call that sends it.
func JSON(v any) Payload {
	b, err := json.Marshal(v)
	if err != nil {
		return Payload{err: fmt.Errorf("switchboard: encoding the payload: %w", err)}
	}
	return Payload{contentType: "application/json", body: b}
}

// RawJSON is JSON already encoded, sent as it is and delivered as data. The server checks
// it (strictly: one value, no duplicate keys, UTF-8) and refuses bad JSON with bad_json.
func RawJSON(b []byte) Payload {
	return Payload{contentType: "application/json", body: b}
}

// Text is UTF-8 text, delivered as a JSON string in data.
func Text(s string) Payload {
	return Payload{contentType: "text/plain; charset=utf-8", body: []byte(s)}
}

// Bytes is binary content, delivered as data_b64 (standard base64).
func Bytes(b []byte) Payload {
	return Payload{contentType: "application/octet-stream", body: b}
}
