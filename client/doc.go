// Package client is the Go client of Switchboard's HTTP API, for backends: typed calls for
// every /v1 endpoint, errors that carry the API's code, retries where a repeat is harmless,
// and the signature check of the events webhook and the hooks, so that a backend imports one
// package.
//
//	sb, err := client.New("https://switchboard.internal", client.WithAPIKey(key))
//	id, err := sb.SendToUser(ctx, "bob", client.JSON(map[string]any{"text": "hi"}))
//	var e *client.Error
//	if errors.As(err, &e) && e.Code == client.CodeInvalidID { ... }
//
// Every call takes a context and is bounded by it. Reads (GET), membership changes (PUT
// and DELETE of a room member) and disconnects are idempotent and retried on a network
// error, 502, 503 and 504, with backoff, honouring Retry-After. Sends (POST) are retried
// the same way: each logical send carries a random Idempotency-Key, the same on every
// attempt, so a send whose answer was lost is answered with its first answer and delivered
// once. Ephemeral sends take no key and are never retried.
//
// The server's OpenAPI document (GET /v1/openapi.json) describes the same API for other
// languages.
package client
