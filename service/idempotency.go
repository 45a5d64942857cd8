package service

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard-dev/switchboard/subscriptions"
)

// Idempotency keys on the POST sends: a backend that did not get an answer retries with the
// same key, and the retry returns the first answer and delivers nothing again.
const (
	idempotencyHeader = "Idempotency-Key"
	// replayedHeader marks an answer that repeats an earlier call's.
	replayedHeader = "Idempotent-Replayed"
	// maxIdempotencyKey bounds a key: it is part of Redis key names.
	maxIdempotencyKey = 255

	codeBadIdempotencyKey = "invalid_idempotency_key"
	codeIdemConflict      = "idempotency_conflict"
	codeIdemPending       = "idempotency_in_progress"
)

// idempotencyKey returns the request's Idempotency-Key, "" without one. A key is 1 to 255
// characters of letters, digits and _.:~+/=- (UUIDs, ULIDs, base64 all fit); anything else,
// or the header twice, is refused, so that what a retry sends names the same record.
func idempotencyKey(r *http.Request) (string, error) {
	vs := r.Header.Values(idempotencyHeader)
	switch {
	case len(vs) == 0:
		return "", nil
	case len(vs) > 1:
		return "", errBadRequest(codeBadIdempotencyKey, "send one Idempotency-Key header, not several")
	}
	k := vs[0]
	if k == "" || len(k) > maxIdempotencyKey || !idempotencyChars(k) {
		return "", errBadRequest(codeBadIdempotencyKey,
			"Idempotency-Key must be 1 to 255 characters of A-Z a-z 0-9 and _.:~+/=-")
	}
	return k, nil
}

func idempotencyChars(k string) bool {
	for i := 0; i < len(k); i++ {
		c := k[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("_.:~+/=-", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// fingerprint digests what a send asks for, so that a retry (the same request) is told
// apart from the key reused with another: the path, then each part, length-prefixed.
func fingerprint(path string, parts ...[]byte) string {
	h := sha256.New()
	var n [8]byte
	for _, p := range append([][]byte{[]byte(path)}, parts...) {
		h.Write(strconv.AppendInt(n[:0], int64(len(p)), 10))
		h.Write([]byte{':'})
		h.Write(p)
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// envelopeFingerprint digests a single send: its path, sender and payload (JSON data and
// binary data told apart).
func envelopeFingerprint(r *http.Request, env subscriptions.Envelope) string {
	kind, data := []byte("j"), []byte(env.Data)
	if env.Binary != nil {
		kind, data = []byte("b"), env.Binary
	}
	return fingerprint(r.URL.Path, []byte(env.From), kind, data)
}

// postUserIdempotent sends a direct message under an idempotency key: the recipient's
// delivery script decides, with the append itself, whether the key delivered it before.
func (s *Server) postUserIdempotent(w http.ResponseWriter, r *http.Request, user string, env subscriptions.Envelope, key string) {
	sent, err := s.hub.PublishIdempotent(r.Context(), user, env,
		subscriptions.Idempotency{Key: key, Fingerprint: envelopeFingerprint(r, env)})
	if err != nil && !errors.Is(err, subscriptions.ErrNotReplicated) {
		writeError(w, err)
		return
	}
	if sent.Replayed {
		w.Header().Set(replayedHeader, "true")
	} else {
		s.metrics.httpDirect.Inc()
	}
	writeJSONBytes(w, http.StatusAccepted, sendAnswer(sent.ID, err))
}

// postRoomIdempotent fans a room message out under an idempotency key. A fan-out spans many
// script calls, so the key is claimed first, atomically, in the room's slot: of concurrent
// calls one sends and the others are told it is under way (409); the answer, success or
// failure, is then recorded for retries to repeat, since a fan-out that failed part way
// reached some members.
func (s *Server) postRoomIdempotent(w http.ResponseWriter, r *http.Request, room string, env subscriptions.Envelope, key string) {
	claim, err := s.hub.ClaimRoomSend(r.Context(), room, "r", subscriptions.Idempotency{Key: key, Fingerprint: envelopeFingerprint(r, env)})
	if err != nil {
		writeError(w, err)
		return
	}
	if claim.State == subscriptions.Done {
		replayAnswer(w, claim.Answer)
		return
	}
	rec := &recorder{header: http.Header{}}
	env.Dedupe = claim.Dedupe()
	s.postRoom(rec, r, room, env, false)
	if err := s.hub.Finish(r.Context(), claim, strconv.Itoa(rec.status)+" "+string(rec.body)); err != nil {
		s.log.Warn("recording a room send's answer failed; a retry after the claim lapses sends it again", "room", room, "err", err)
	}
	for k, v := range rec.header {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.status)
	_, _ = w.Write(rec.body)
}

// replayAnswer writes a recorded answer, "<status> <body>".
func replayAnswer(w http.ResponseWriter, answer string) {
	st, body, _ := strings.Cut(answer, " ")
	status, err := strconv.Atoi(st)
	if err != nil || status < 200 || status > 599 {
		writeError(w, &apiError{status: http.StatusInternalServerError, code: codeInternal, message: "the recorded answer is unreadable"})
		return
	}
	w.Header().Set(replayedHeader, "true")
	writeJSONBytes(w, status, []byte(body))
}

// recorder keeps an answer to record it before it is written.
type recorder struct {
	header http.Header
	status int
	body   []byte
}

func (c *recorder) Header() http.Header { return c.header }
func (c *recorder) WriteHeader(status int) {
	if c.status == 0 {
		c.status = status
	}
}
func (c *recorder) Write(b []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	c.body = append(c.body, b...)
	return len(b), nil
}

// errIdempotentEphemeral refuses a key on an ephemeral send: nothing stores it, so nothing
// could tell a retry from a new send.
var errIdempotentEphemeral = errBadRequest(codeBadIdempotencyKey,
	"an ephemeral send is not stored and takes no Idempotency-Key; send it without one")

// idempotencyRefusal maps the idempotency errors of the core: a key reused with another
// request, or a send under the key still under way (retry shortly).
func idempotencyRefusal(err error) *apiError {
	if errors.Is(err, subscriptions.ErrIdempotencyPending) {
		return &apiError{status: http.StatusConflict, code: codeIdemPending, retryAfter: time.Second,
			message: "a send with this Idempotency-Key is under way; retry shortly for its answer"}
	}
	return &apiError{status: http.StatusConflict, code: codeIdemConflict,
		message: "this Idempotency-Key was used with another request; use a new key for a new send"}
}

// sendDirects sends a batch's direct messages, under idem when it is set: each item then
// has a record of its own, written by the script call that delivers it.
func (s *Server) sendDirects(r *http.Request, directs []subscriptions.Direct, idem *subscriptions.Idempotency) ([]subscriptions.Sent, []error) {
	if idem != nil {
		return s.hub.PublishManyIdempotent(r.Context(), directs, *idem)
	}
	ids, errs := s.hub.PublishMany(r.Context(), directs)
	sent := make([]subscriptions.Sent, len(ids))
	for i, id := range ids {
		sent[i].ID = id
	}
	return sent, errs
}

// batchRoomIdempotent sends the room item at index i of a batch under the batch's key: the
// item's own claim in the room's slot, its result recorded for retries. again says the
// result repeats an earlier call's.
func (s *Server) batchRoomIdempotent(r *http.Request, i int, it validItem, idem subscriptions.Idempotency) (batchResult, bool, error) {
	claim, err := s.hub.ClaimRoomSend(r.Context(), it.Room, "b"+strconv.Itoa(i), idem)
	if err != nil {
		return batchResult{}, false, err
	}
	var res batchResult
	if claim.State == subscriptions.Done {
		if err := json.Unmarshal([]byte(claim.Answer), &res); err != nil {
			return batchResult{}, false, fmt.Errorf("the recorded answer is unreadable: %w", err)
		}
		return res, true, nil
	}
	env := it.env
	env.Dedupe = claim.Dedupe()
	n, err := s.hub.PublishRoom(r.Context(), it.Room, env, false)
	if err != nil && !errors.Is(err, subscriptions.ErrNotReplicated) {
		ae := classify(err)
		res.Error = &errorDetail{Code: ae.code, Message: ae.message}
	} else {
		res.Recipients, res.Replicated = &n, replicated(err)
	}
	b, _ := json.Marshal(res)
	if err := s.hub.Finish(r.Context(), claim, string(b)); err != nil {
		s.log.Warn("recording a batch room item's answer failed; a retry after the claim lapses sends it again", "room", it.Room, "err", err)
	}
	return res, false, nil
}
