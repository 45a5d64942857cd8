package service

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"

	"github.com/switchboard-dev/switchboard/subscriptions"
)

// maxBatchItems bounds one POST /v1/messages.
const maxBatchItems = 1000

// batchResult is one item's answer: an id (direct), a recipient count (room), or an error
// when Redis failed part way through a batch.
type batchResult struct {
	ID         string `json:"id,omitempty"`
	Recipients *int   `json:"recipients,omitempty"`
	// Replicated is false when the item is stored on the master only (--wait-replicas).
	Replicated *bool        `json:"replicated,omitempty"`
	Error      *errorDetail `json:"error,omitempty"`
}

// handlePostBatch sends many messages in one call: POST /v1/messages. The whole batch is
// validated before any item is accepted; direct messages share pipelines, so notifying a
// thousand users costs the backend one round trip and the node a few.
func (s *Server) handlePostBatch(w http.ResponseWriter, r *http.Request) {
	key, err := idempotencyKey(r)
	if err != nil {
		writeError(w, err)
		return
	}
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
	var idem *subscriptions.Idempotency
	if key != "" {
		idem = &subscriptions.Idempotency{Key: key, Fingerprint: fingerprint(r.URL.Path, body)}
		if err := s.hub.ClaimBatch(r.Context(), *idem); err != nil {
			writeError(w, err)
			return
		}
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
	sent, errs := s.sendDirects(r, directs, idem)
	replayed, replayedDirects := 0, 0
	for k, i := range directAt {
		if errors.Is(errs[k], subscriptions.ErrNotReplicated) {
			results[i].Replicated, errs[k] = new(bool), nil
		}
		if errs[k] != nil {
			fail(i, errs[k])
			continue
		}
		results[i].ID = sent[k].ID.String()
		if sent[k].Replayed {
			replayed++
			replayedDirects++
		}
	}
	for i, it := range items {
		if it.Room == "" {
			continue
		}
		res, again := s.sendBatchRoom(r, i, it, idem)
		if results[i] = res; res.Error != nil {
			failed++
		}
		if again {
			replayed++
		}
	}
	if replayed == len(items) {
		w.Header().Set(replayedHeader, "true")
	}
	if failed == len(items) {
		writeError(w, &apiError{status: http.StatusServiceUnavailable, code: codeUnavailable, message: "redis is unavailable; nothing was accepted"})
		return
	}
	s.metrics.messagesIn.WithLabelValues("http", "direct").Add(float64(len(directs) - countErrs(errs) - replayedDirects))
	writeJSON(w, http.StatusAccepted, struct {
		Results []batchResult `json:"results"`
	}{results})
}

// sendBatchRoom sends the room item at index i of a batch, under idem when it is set, and
// returns its result; again says the result repeats an earlier call's.
func (s *Server) sendBatchRoom(r *http.Request, i int, it validItem, idem *subscriptions.Idempotency) (res batchResult, again bool) {
	var err error
	if idem != nil {
		res, again, err = s.batchRoomIdempotent(r, i, it, *idem)
	} else {
		var n int
		n, err = s.hub.PublishRoom(r.Context(), it.Room, it.env, false)
		if err == nil || errors.Is(err, subscriptions.ErrNotReplicated) {
			res.Recipients, res.Replicated, err = &n, replicated(err), nil
		}
	}
	if err != nil {
		ae := classify(err)
		res.Error = &errorDetail{Code: ae.code, Message: ae.message}
	}
	return res, again
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
// Names match exactly and appear once: "USER" is an unknown field, not "user", and a
// second "user" is a duplicate, not a replacement of the first.
func (s *Server) decodeBatch(body []byte) ([]validItem, error) {
	r, err := newJSONReader(body)
	if err != nil {
		return nil, errBadJSON(err)
	}
	defer r.release()
	shape := errBadRequest(codeBadJSON, `the body must be {"messages":[...]}`)
	tok, err := r.dec.ReadToken()
	if err != nil {
		return nil, errBadJSON(err)
	}
	if tok.Kind() != '{' {
		return nil, shape
	}
	var items []validItem
	seen := false
	for r.dec.PeekKind() != '}' {
		tok, err := r.dec.ReadToken()
		if err != nil {
			return nil, errBadJSON(err)
		}
		if name := tok.String(); name != "messages" {
			return nil, errBadRequest(codeBadJSON, fmt.Sprintf("unknown field %q in the batch", name))
		}
		seen = true
		if items, err = s.readBatchItems(r); err != nil {
			return nil, err
		}
	}
	if _, err := r.dec.ReadToken(); err != nil {
		return nil, errBadJSON(err)
	}
	if err := r.end(); err != nil {
		return nil, errBadRequest(codeBadJSON, "unexpected data after the batch object: "+jsonProblem(err))
	}
	switch {
	case !seen:
		return nil, errBadRequest(codeBadRequest, `"messages" is required`)
	case len(items) == 0:
		return nil, errBadRequest(codeBadRequest, "a batch needs at least one message")
	}
	return items, nil
}

// readBatchItems reads the array of a batch's "messages", validating each item as it comes.
func (s *Server) readBatchItems(r *jsonReader) ([]validItem, error) {
	if k, err := r.peek(); err != nil {
		return nil, errBadJSON(err)
	} else if k != '[' {
		return nil, errBadRequest(codeBadRequest, `"messages" must be an array`)
	}
	if _, err := r.dec.ReadToken(); err != nil {
		return nil, errBadJSON(err)
	}
	var items []validItem
	for r.dec.PeekKind() != ']' {
		if len(items) == maxBatchItems {
			return nil, errBadRequest(codeBadRequest, fmt.Sprintf("a batch holds at most %d messages", maxBatchItems))
		}
		it, err := s.readBatchItem(r, len(items))
		if err != nil {
			return nil, err
		}
		items = append(items, it)
	}
	if _, err := r.dec.ReadToken(); err != nil {
		return nil, errBadJSON(err)
	}
	return items, nil
}

// readBatchItem reads and validates the batch item at index i.
func (s *Server) readBatchItem(r *jsonReader, i int) (validItem, error) {
	bad := func(code, msg string) error {
		return errBadRequest(code, fmt.Sprintf("messages[%d]: %s", i, msg))
	}
	m, err := readItemFields(r, bad)
	if err != nil {
		return validItem{}, err
	}
	return m.validate(i, s.cfg.MaxMessageBytes, bad)
}

// itemFields are a batch item's fields as read, before they are checked.
type itemFields struct {
	user, room, from, dataB64 string
	hasB64                    bool
	data                      []byte
}

// readItemFields reads one batch item's object, refusing unknown fields and fields of the
// wrong type; bad builds the error of a refusal that names the item.
func readItemFields(r *jsonReader, bad func(code, msg string) error) (itemFields, error) {
	var m itemFields
	tok, err := r.dec.ReadToken()
	if err != nil {
		return m, errBadJSON(err)
	}
	if tok.Kind() != '{' {
		return m, bad(codeBadJSON, "an item must be a JSON object")
	}
	for r.dec.PeekKind() != '}' {
		tok, err := r.dec.ReadToken()
		if err != nil {
			return m, errBadJSON(err)
		}
		name := tok.String()
		var dst *string
		switch name {
		case "user":
			dst = &m.user
		case "room":
			dst = &m.room
		case "from":
			dst = &m.from
		case "data_b64":
			dst, m.hasB64 = &m.dataB64, true
		case "data":
			v, deep, err := r.value(false)
			if err != nil {
				return m, errBadJSON(err)
			}
			if deep {
				return m, bad(codeBadJSON, `"data" is `+errTooDeep.Error())
			}
			m.data = v
			continue
		default:
			return m, bad(codeBadJSON, fmt.Sprintf("unknown field %q", name))
		}
		if k, err := r.peek(); err != nil {
			return m, errBadJSON(err)
		} else if k != '"' {
			return m, bad(codeBadJSON, fmt.Sprintf("%q must be a string", name))
		}
		if tok, err = r.dec.ReadToken(); err != nil {
			return m, errBadJSON(err)
		}
		*dst = tok.String()
	}
	if _, err := r.dec.ReadToken(); err != nil {
		return m, errBadJSON(err)
	}
	return m, nil
}

// validate checks the item's ids and payload and builds what is sent.
func (m itemFields) validate(i, maxBytes int, bad func(code, msg string) error) (validItem, error) {
	switch {
	case (m.user == "") == (m.room == ""):
		return validItem{}, bad(codeBadRequest, `needs exactly one of "user" and "room"`)
	case m.user != "" && !subscriptions.ValidID(m.user):
		return validItem{}, bad(codeInvalidID, `"user" must match ^[A-Za-z0-9._@+-]{1,128}$`)
	case m.room != "" && !subscriptions.ValidID(m.room):
		return validItem{}, bad(codeInvalidID, `"room" must match ^[A-Za-z0-9._@+-]{1,128}$`)
	case m.from != "" && !subscriptions.ValidID(m.from):
		return validItem{}, bad(codeInvalidID, `"from" must match ^[A-Za-z0-9._@+-]{1,128}$`)
	case (m.data == nil) == !m.hasB64:
		return validItem{}, bad(codeBadRequest, `needs exactly one of "data" and "data_b64"`)
	}
	env := subscriptions.Envelope{From: m.from}
	if m.hasB64 {
		raw, err := base64.StdEncoding.Strict().DecodeString(m.dataB64)
		if err != nil {
			return validItem{}, bad(codeBadRequest, `"data_b64" is not standard base64 with padding`)
		}
		env.Binary = raw
	} else {
		env.Data = m.data
	}
	if len(env.Data) > maxBytes || len(env.Binary) > maxBytes {
		return validItem{}, &apiError{status: http.StatusRequestEntityTooLarge, code: codeTooLarge,
			message: fmt.Sprintf("messages[%d]: data is larger than %d bytes", i, maxBytes)}
	}
	return validItem{User: m.user, Room: m.room, env: env}, nil
}
