package service

import (
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/switchboard-dev/switchboard/subscriptions"
)

// readPayload reads a message payload from an HTTP request body. Its Content-Type decides
// the form: JSON is delivered as data, text as a JSON string in data, anything else as
// data_b64. The body is never read past max bytes.
func readPayload(w http.ResponseWriter, r *http.Request, max int) (subscriptions.Envelope, error) {
	body, err := readBody(w, r, max)
	if err != nil {
		return subscriptions.Envelope{}, err
	}
	return decodePayload(r.Header.Get("Content-Type"), body)
}

// Buffer sizes of readBody: a body is read into a buffer that starts at most this large
// and grows as bytes arrive, never from the declared Content-Length alone.
const (
	bodyFirstChunk   = 16 << 10 // a declared length up to this is allocated at once
	bodyChunkedStart = 512      // the first buffer of a body without a Content-Length
)

// readBody reads a request body of at most max bytes, refusing larger ones with 413. A
// Content-Length over max is refused before reading; otherwise the buffer grows (doubling)
// only as bytes arrive, so that a client that declares 32 MiB and stalls holds 16 KiB, not
// 32 MiB. A small body with a Content-Length costs one allocation of exactly its size.
func readBody(_ http.ResponseWriter, r *http.Request, max int) ([]byte, error) {
	if r.ContentLength > int64(max) {
		return nil, &apiError{status: http.StatusRequestEntityTooLarge, code: codeTooLarge,
			message: fmt.Sprintf("payload is larger than %d bytes", max)}
	}
	// net/http ends the body at its Content-Length; without one, reading max+1 bytes tells
	// a body over the limit.
	end := max + 1
	first := bodyChunkedStart
	if r.ContentLength >= 0 {
		end = int(r.ContentLength)
		first = bodyFirstChunk
	}
	buf := make([]byte, 0, min(end, first))
	for len(buf) < end {
		if len(buf) == cap(buf) {
			buf = append(make([]byte, 0, min(end, 2*cap(buf))), buf...)
		}
		n, err := r.Body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			if r.ContentLength >= 0 && len(buf) < end {
				return nil, errBadRequest(codeBadRequest, "reading the request body failed")
			}
			break
		}
		if err != nil {
			return nil, errBadRequest(codeBadRequest, "reading the request body failed")
		}
	}
	if len(buf) > max {
		return nil, &apiError{status: http.StatusRequestEntityTooLarge, code: codeTooLarge,
			message: fmt.Sprintf("payload is larger than %d bytes", max)}
	}
	return buf, nil
}

// errBadJSON refuses a JSON body, naming what is wrong with it. JSON must be UTF-8 (RFC 8259
// requires it, and a WebSocket text frame must be: a browser fails the connection on invalid
// UTF-8), one value, without duplicate keys, nested at most maxJSONDepth levels.
func errBadJSON(err error) error {
	return errBadRequest(codeBadJSON, "the body is not accepted as JSON: "+jsonProblem(err))
}

// decodePayload turns a body of the given Content-Type into an envelope's data.
func decodePayload(contentType string, body []byte) (subscriptions.Envelope, error) {
	switch contentType {
	case "":
		return subscriptions.Envelope{Binary: body}, nil
	case "application/json": // the common case, without parsing parameters
		if err := checkJSON(body); err != nil {
			return subscriptions.Envelope{}, errBadJSON(err)
		}
		return subscriptions.Envelope{Data: body}, nil
	}
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return subscriptions.Envelope{}, &apiError{status: http.StatusUnsupportedMediaType, code: codeUnsupported, message: "malformed Content-Type"}
	}
	switch {
	case mt == "application/json" || strings.HasSuffix(mt, "+json"):
		if err := checkJSON(body); err != nil {
			return subscriptions.Envelope{}, errBadJSON(err)
		}
		return subscriptions.Envelope{Data: body}, nil
	case strings.HasPrefix(mt, "text/"):
		if cs := params["charset"]; cs != "" && !strings.EqualFold(cs, "utf-8") && !strings.EqualFold(cs, "us-ascii") {
			return subscriptions.Envelope{}, &apiError{status: http.StatusUnsupportedMediaType, code: codeUnsupported, message: "text payloads must be UTF-8"}
		}
		if !utf8.Valid(body) {
			return subscriptions.Envelope{}, errBadRequest(codeBadRequest, "the text body is not valid UTF-8")
		}
		data, _ := json.Marshal(string(body))
		return subscriptions.Envelope{Data: data}, nil
	default:
		return subscriptions.Envelope{Binary: body}, nil
	}
}
