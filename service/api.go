package service

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/switchboard-dev/switchboard/subscriptions"
)

// pathID returns the route parameter name, refusing ids that do not match the pattern.
func pathID(r *http.Request, name string) (string, error) {
	v := chi.URLParam(r, name)
	if !subscriptions.ValidID(v) {
		return "", errBadRequest(codeInvalidID, name+" must match ^[A-Za-z0-9._@+-]{1,128}$")
	}
	return v, nil
}

// readMessage reads what a POST of a message carries: the recipient named by the route
// parameter param (a user or a room), the optional ?from= sender, and the payload.
func (s *Server) readMessage(w http.ResponseWriter, r *http.Request, param string) (string, subscriptions.Envelope, error) {
	to, err := pathID(r, param)
	if err != nil {
		return "", subscriptions.Envelope{}, err
	}
	var from string
	if r.URL.RawQuery != "" { // parsing an empty query still allocates its map
		from = r.URL.Query().Get("from")
	}
	if from != "" && !subscriptions.ValidID(from) {
		return "", subscriptions.Envelope{}, errBadRequest(codeInvalidID, "from must match ^[A-Za-z0-9._@+-]{1,128}$")
	}
	env, err := readPayload(w, r, s.cfg.MaxMessageBytes)
	env.From = from
	return to, env, err
}

// handlePostUserMessage sends a direct message: POST /v1/users/{user}/messages.
func (s *Server) handlePostUserMessage(w http.ResponseWriter, r *http.Request) {
	user, env, err := s.readMessage(w, r, "user")
	if err != nil {
		writeError(w, err)
		return
	}
	key, err := idempotencyKey(r)
	if err != nil {
		writeError(w, err)
		return
	}
	if r.URL.RawQuery != "" {
		if ephemeral, err := ephemeralQuery(r); err != nil || ephemeral {
			if err == nil && key != "" {
				err = errIdempotentEphemeral
			}
			if err == nil {
				err = s.hub.PublishEphemeral(r.Context(), user, env)
			}
			if err != nil {
				writeError(w, err)
				return
			}
			writeJSONBytes(w, http.StatusAccepted, []byte("{\"ephemeral\":true}\n"))
			return
		}
	}
	if key != "" {
		s.postUserIdempotent(w, r, user, env, key)
		return
	}
	id, err := s.hub.Publish(r.Context(), user, env)
	if err != nil && !errors.Is(err, subscriptions.ErrNotReplicated) {
		writeError(w, err)
		return
	}
	s.metrics.httpDirect.Inc()
	writeJSONBytes(w, http.StatusAccepted, sendAnswer(id, err))
}

// ephemeralQuery reads ?ephemeral=true|false: a send published only, never stored.
func ephemeralQuery(r *http.Request) (bool, error) {
	switch r.URL.Query().Get("ephemeral") {
	case "", "false":
		return false, nil
	case "true":
		return true, nil
	}
	return false, errBadRequest(codeBadRequest, "ephemeral must be true or false")
}

// handleGetUserMessages serves a user's history: GET /v1/users/{user}/messages.
func (s *Server) handleGetUserMessages(w http.ResponseWriter, r *http.Request) {
	user, err := pathID(r, "user")
	if err != nil {
		writeError(w, err)
		return
	}
	q := r.URL.Query()
	since := q.Get("since")
	if since != "" {
		if _, err := subscriptions.ParseStreamID(since); err != nil {
			writeError(w, errBadRequest(codeBadRequest, "since must be a message id <ms>-<seq>"))
			return
		}
	}
	limit := 100
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			writeError(w, errBadRequest(codeBadRequest, "limit must be an integer from 1 to 1000"))
			return
		}
		limit = n
	}
	msgs, err := s.hub.History(r.Context(), user, since, limit)
	if err != nil {
		writeError(w, err)
		return
	}
	// The envelopes are JSON already; splice them rather than decode and encode them again.
	n := 16
	for _, m := range msgs {
		n += len(m.Payload) + 1
	}
	b := make([]byte, 0, n)
	b = append(b, `{"messages":[`...)
	for i, m := range msgs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, m.Payload...)
	}
	b = append(b, "]}\n"...)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

// handleDeleteConnections closes every connection of a user, on every node, with 4001:
// DELETE /v1/users/{user}/connections. With ?revoke=true it first refuses, on every node,
// the user's tokens issued before now, so that a kicked client cannot reconnect with the
// token it holds; the revocation is stored before the kick, so no reconnect slips between.
func (s *Server) handleDeleteConnections(w http.ResponseWriter, r *http.Request) {
	user, err := pathID(r, "user")
	if err != nil {
		writeError(w, err)
		return
	}
	var revoke bool
	if r.URL.RawQuery != "" {
		switch v := r.URL.Query().Get("revoke"); v {
		case "", "false":
		case "true":
			revoke = true
		default:
			writeError(w, errBadRequest(codeBadRequest, "revoke must be true or false"))
			return
		}
	}
	var answer struct {
		Disconnected  int    `json:"disconnected"`
		RevokedBefore string `json:"revoked_before,omitempty"`
	}
	if revoke {
		// iat is in whole seconds: every token of the current second may predate the
		// revocation, so the revocation reaches to the start of the next one, which is
		// when a fresh token (iat >= revoked_before) passes.
		before := time.Now().Truncate(time.Second).Add(time.Second)
		// The record must outlive every token it refuses: they all expire within the
		// maximum lifetime (plus the leeway exp gets) from now.
		ttl := 24*time.Hour + 31*time.Second // dev mode: no token to refuse, kept as the default lifetime
		if v := s.cfg.Tokens; v != nil {
			ttl = v.MaxLifetime() + v.Leeway() + time.Second
		}
		if err := s.hub.RevokeTokens(r.Context(), user, before, ttl); err != nil {
			writeError(w, err)
			return
		}
		answer.RevokedBefore = before.UTC().Format(time.RFC3339)
	}
	answer.Disconnected, err = s.hub.Disconnect(r.Context(), user)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, answer)
}
