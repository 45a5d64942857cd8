package service

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"unicode/utf8"

	"github.com/switchboard-dev/switchboard/subscriptions"
)

// maxBatchItems bounds one POST /v1/messages.
const maxBatchItems = 1000

type batchRequest struct {
	Messages []batchItem `json:"messages"`
}

type batchItem struct {
	User    string          `json:"user"`
	Room    string          `json:"room"`
	From    string          `json:"from"`
	Data    json.RawMessage `json:"data"`
	DataB64 *string         `json:"data_b64"`
}

// batchResult is one item's answer: an id (direct), a recipient count (room), or an error
// when Redis failed part way through a batch.
type batchResult struct {
	ID         string       `json:"id,omitempty"`
	Recipients *int         `json:"recipients,omitempty"`
	Error      *errorDetail `json:"error,omitempty"`
}

// handlePostBatch sends many messages in one call: POST /v1/messages. The whole batch is
// validated before any item is accepted; direct messages share pipelines, so notifying a
// thousand users costs the backend one round trip and the node a few.
func (s *Server) handlePostBatch(w http.ResponseWriter, r *http.Request) {
	limit := min(maxBatchItems*(s.cfg.MaxMessageBytes+512)+64<<10, 32<<20)
	body, err := readBody(w, r, limit)
	if err != nil {
		writeError(w, err)
		return
	}
	items, err := s.decodeBatch(body)
	if err != nil {
		writeError(w, err)
		return
	}
	results := make([]batchResult, len(items))
	var directs []subscriptions.Direct
	var directAt []int
	for i, it := range items {
		if it.User != "" {
			directs = append(directs, subscriptions.Direct{User: it.User, Envelope: it.env})
			directAt = append(directAt, i)
		}
	}
	failed := 0
	fail := func(i int, err error) {
		ae := classify(err)
		results[i].Error = &errorDetail{Code: ae.code, Message: ae.message}
		failed++
	}
	ids, errs := s.hub.PublishMany(r.Context(), directs)
	for k, i := range directAt {
		if errs[k] != nil {
			fail(i, errs[k])
			continue
		}
		results[i].ID = ids[k].String()
	}
	for i, it := range items {
		if it.Room == "" {
			continue
		}
		n, err := s.hub.PublishRoom(r.Context(), it.Room, it.env, false)
		if err != nil {
			fail(i, err)
			continue
		}
		results[i].Recipients = &n
	}
	if failed == len(items) {
		writeError(w, &apiError{status: http.StatusServiceUnavailable, code: codeUnavailable, message: "redis is unavailable; nothing was accepted"})
		return
	}
	s.metrics.messagesIn.WithLabelValues("http", "direct").Add(float64(len(directs) - countErrs(errs)))
	writeJSON(w, http.StatusAccepted, struct {
		Results []batchResult `json:"results"`
	}{results})
}

func countErrs(errs []error) int {
	n := 0
	for _, e := range errs {
		if e != nil {
			n++
		}
	}
	return n
}

// validItem is a batch item that passed validation, with its envelope built.
type validItem struct {
	User, Room string
	env        subscriptions.Envelope
}

// decodeBatch parses and validates a whole batch; a bad item is refused naming its index.
func (s *Server) decodeBatch(body []byte) ([]validItem, error) {
	if !utf8.Valid(body) { // the decoder would keep invalid UTF-8 inside "data" as it is
		return nil, errBadJSON
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var req batchRequest
	if err := dec.Decode(&req); err != nil {
		return nil, errBadRequest(codeBadJSON, "the body must be {\"messages\":[...]}: "+err.Error())
	}
	if dec.More() {
		return nil, errBadRequest(codeBadJSON, "unexpected data after the batch object")
	}
	switch {
	case req.Messages == nil:
		return nil, errBadRequest(codeBadRequest, `"messages" is required`)
	case len(req.Messages) == 0:
		return nil, errBadRequest(codeBadRequest, "a batch needs at least one message")
	case len(req.Messages) > maxBatchItems:
		return nil, errBadRequest(codeBadRequest, fmt.Sprintf("a batch holds at most %d messages", maxBatchItems))
	}
	items := make([]validItem, len(req.Messages))
	for i, m := range req.Messages {
		bad := func(code, msg string) error {
			return errBadRequest(code, fmt.Sprintf("messages[%d]: %s", i, msg))
		}
		switch {
		case (m.User == "") == (m.Room == ""):
			return nil, bad(codeBadRequest, `needs exactly one of "user" and "room"`)
		case m.User != "" && !subscriptions.ValidID(m.User):
			return nil, bad(codeInvalidID, `"user" must match ^[A-Za-z0-9._@+-]{1,128}$`)
		case m.Room != "" && !subscriptions.ValidID(m.Room):
			return nil, bad(codeInvalidID, `"room" must match ^[A-Za-z0-9._@+-]{1,128}$`)
		case m.From != "" && !subscriptions.ValidID(m.From):
			return nil, bad(codeInvalidID, `"from" must match ^[A-Za-z0-9._@+-]{1,128}$`)
		case (m.Data == nil) == (m.DataB64 == nil):
			return nil, bad(codeBadRequest, `needs exactly one of "data" and "data_b64"`)
		}
		env := subscriptions.Envelope{From: m.From}
		if m.DataB64 != nil {
			raw, err := base64.StdEncoding.Strict().DecodeString(*m.DataB64)
			if err != nil {
				return nil, bad(codeBadRequest, `"data_b64" is not standard base64 with padding`)
			}
			env.Binary = raw
		} else {
			env.Data = m.Data
		}
		if len(env.Data) > s.cfg.MaxMessageBytes || len(env.Binary) > s.cfg.MaxMessageBytes {
			return nil, &apiError{status: http.StatusRequestEntityTooLarge, code: codeTooLarge,
				message: fmt.Sprintf("messages[%d]: data is larger than %d bytes", i, s.cfg.MaxMessageBytes)}
		}
		items[i] = validItem{User: m.User, Room: m.Room, env: env}
	}
	return items, nil
}
