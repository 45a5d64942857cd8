package service_test

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/switchboard-dev/switchboard/internal/redistest"
	"github.com/switchboard-dev/switchboard/internal/testutil"
	"github.com/switchboard-dev/switchboard/internal/wsclient"
)

// Every refusal answers with a status, an error code and the JSON error object, stores and
// delivers nothing, and leaves every other client of the node working: one misbehaving
// client must never hurt another.

// refusalMaxBytes is the MaxMessageBytes of the nodes in these tests: small, so that
// payloads over it are cheap to build.
const refusalMaxBytes = 1024

func smallMessages(o *nodeOptions) { o.service.MaxMessageBytes = refusalMaxBytes }

// bystanders are bob and carol, connected to a node while others misbehave on it. bob is
// the target of the refused requests; carol is just another user of the node.
type bystanders struct {
	n          *node
	bob, carol *wsclient.Conn
	last       string   // the id of the last message bob is known to have
	auth       []string // header key and value for /v1 calls, when the node has an API key
}

func newBystanders(t *testing.T, n *node, auth ...string) *bystanders {
	t.Helper()
	b := &bystanders{n: n, auth: auth}
	b.bob, _ = connect(t, n, "bob")
	b.carol, _ = connect(t, n, "carol")
	return b
}

// post sends a JSON direct message as a backend and returns its id.
func (b *bystanders) post(t *testing.T, user, data string) string {
	t.Helper()
	r := do(t, "POST", b.n.base+"/v1/users/"+user+"/messages", "application/json", strings.NewReader(data), b.auth...)
	if r.status != http.StatusAccepted {
		t.Fatalf("POST DM to %s: %d %s", user, r.status, r.body)
	}
	var a struct{ ID string }
	if err := json.Unmarshal(r.body, &a); err != nil || a.ID == "" {
		t.Fatalf("POST DM to %s: no id in %q", user, r.body)
	}
	return a.ID
}

// history returns the ids of user's stored messages after since ("" for all).
func (b *bystanders) history(t *testing.T, user, since string) []string {
	t.Helper()
	u := b.n.base + "/v1/users/" + user + "/messages?limit=1000"
	if since != "" {
		u += "&since=" + since
	}
	r := do(t, "GET", u, "", nil, b.auth...)
	if r.status != http.StatusOK {
		t.Fatalf("GET history of %s: %d %s", user, r.status, r.body)
	}
	var h struct{ Messages []struct{ ID string } }
	if err := json.Unmarshal(r.body, &h); err != nil {
		t.Fatalf("GET history of %s: %v in %q", user, err, r.body)
	}
	ids := make([]string, len(h.Messages))
	for i, m := range h.Messages {
		ids[i] = m.ID
	}
	return ids
}

// checkUntouched proves that since the last check nothing reached bob, neither his stream
// nor his connection, and that bob and carol still get direct messages. It needs no
// quiet period: a marker is posted to bob, and since a user's messages are stored and
// arrive in id order, anything the refused request had delivered would come before it.
func (b *bystanders) checkUntouched(t *testing.T) {
	t.Helper()
	marker := b.post(t, "bob", `{"marker":true}`)
	if f := next(t, b.bob, "message"); f.ID != marker {
		t.Fatalf("bob's connection got %s before the marker %s: something was delivered", f.Raw, marker)
	}
	if got := b.history(t, "bob", b.last); len(got) != 1 || got[0] != marker {
		t.Fatalf("bob's stream after %q holds %v, want only the marker %s: something was stored", b.last, got, marker)
	}
	b.last = marker
	id := b.post(t, "carol", `{"still":"working"}`)
	if f := next(t, b.carol, "message"); f.ID != id {
		t.Fatalf("carol got %s, want message %s", f.Raw, id)
	}
}

// checkRefusal asserts a refusal's status, code and JSON error body.
func checkRefusal(t *testing.T, r response, status int, code string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d; body %q", r.status, status, r.body)
	}
	if got := r.errorCode(t); got != code {
		t.Fatalf("error code %q, want %q; body %q", got, code, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q, want application/json", ct)
	}
}

// chunkedReader hides the body's type from net/http, so that the request has no
// Content-Length and goes out with chunked transfer encoding.
type chunkedReader struct{ r io.Reader }

func (c chunkedReader) Read(p []byte) (int, error) { return c.r.Read(p) }

func plainBody(s string) func() io.Reader {
	return func() io.Reader { return strings.NewReader(s) }
}

func chunkedBody(s string) func() io.Reader {
	return func() io.Reader { return chunkedReader{strings.NewReader(s)} }
}

func TestHTTPRefusalsAnswerWithErrorAndStoreNothing(t *testing.T) {
	srv, _ := startRedis(t)
	n := startNode(t, onRedis(srv), "a", smallMessages)
	b := newBystanders(t, n)
	long := strings.Repeat("a", 129)
	over := strings.Repeat("x", refusalMaxBytes+1)
	cases := []struct {
		name         string
		method, path string // path includes the query
		contentType  string
		body         func() io.Reader
		status       int
		code         string
	}{
		{"a user id with a space is refused", "POST", "/v1/users/b%20ob/messages", "application/json", plainBody(`1`), 400, "invalid_id"},
		{"a user id that is only a space is refused", "POST", "/v1/users/%20/messages", "application/json", plainBody(`1`), 400, "invalid_id"},
		{"a user id of 129 characters is refused", "POST", "/v1/users/" + long + "/messages", "application/json", plainBody(`1`), 400, "invalid_id"},
		{"a user id with a colon is refused", "POST", "/v1/users/bob:x/messages", "application/json", plainBody(`1`), 400, "invalid_id"},
		{"a user id with braces is refused", "POST", "/v1/users/%7Bbob%7D/messages", "application/json", plainBody(`1`), 400, "invalid_id"},
		{"a user id with an encoded slash is refused", "POST", "/v1/users/bob%2Fx/messages", "application/json", plainBody(`1`), 400, "invalid_id"},
		{"a user id with non-ASCII letters is refused", "POST", "/v1/users/b%C3%B6b/messages", "application/json", plainBody(`1`), 400, "invalid_id"},
		{"an empty user id is refused", "POST", "/v1/users//messages", "application/json", plainBody(`1`), 400, "invalid_id"},
		{"history of an invalid user id is refused", "GET", "/v1/users/bob:x/messages", "", nil, 400, "invalid_id"},
		{"a from with a space is refused", "POST", "/v1/users/bob/messages?from=a%20b", "application/json", plainBody(`1`), 400, "invalid_id"},
		{"a from with a colon is refused", "POST", "/v1/users/bob/messages?from=svc:x", "application/json", plainBody(`1`), 400, "invalid_id"},
		{"a from of 129 characters is refused", "POST", "/v1/users/bob/messages?from=" + long, "application/json", plainBody(`1`), 400, "invalid_id"},
		{"malformed JSON is refused", "POST", "/v1/users/bob/messages", "application/json", plainBody(`{"a":`), 400, "bad_json"},
		{"JSON with trailing garbage is refused", "POST", "/v1/users/bob/messages", "application/json", plainBody(`{} x`), 400, "bad_json"},
		{"an empty body declared as JSON is refused", "POST", "/v1/users/bob/messages", "application/json", plainBody(``), 400, "bad_json"},
		{"malformed vendor JSON is refused", "POST", "/v1/users/bob/messages", "application/vnd.x+json", plainBody(`nope`), 400, "bad_json"},
		{"JSON with invalid UTF-8 in a string is refused", "POST", "/v1/users/bob/messages", "application/json", plainBody("{\"a\":\"caf\xe9\"}"), 400, "bad_json"},
		{"vendor JSON with invalid UTF-8 is refused", "POST", "/v1/users/bob/messages", "application/vnd.x+json", plainBody("\"\xff\""), 400, "bad_json"},
		{"a room message with invalid UTF-8 is refused", "POST", "/v1/rooms/r/messages", "application/json", plainBody("\"\xc3\x28\""), 400, "bad_json"},
		{"text that is not UTF-8 is refused", "POST", "/v1/users/bob/messages", "text/plain", plainBody("caf\xe9"), 400, "bad_request"},
		{"text in latin1 is refused as unsupported", "POST", "/v1/users/bob/messages", "text/plain; charset=latin1", plainBody("caf\xe9"), 415, "unsupported_media_type"},
		{"a Content-Type with a broken parameter is refused", "POST", "/v1/users/bob/messages", "text/plain; charset", plainBody("hi"), 415, "unsupported_media_type"},
		{"a Content-Type without a subtype is refused", "POST", "/v1/users/bob/messages", "application/", plainBody("hi"), 415, "unsupported_media_type"},
		{"a body over the limit with a Content-Length is refused", "POST", "/v1/users/bob/messages", "application/octet-stream", plainBody(over), 413, "too_large"},
		{"a chunked body over the limit is refused", "POST", "/v1/users/bob/messages", "application/octet-stream", chunkedBody(over), 413, "too_large"},
		{"a chunked JSON body over the limit is refused", "POST", "/v1/users/bob/messages", "application/json", chunkedBody(`"` + over + `"`), 413, "too_large"},
		{"PUT on a user's messages is not allowed", "PUT", "/v1/users/bob/messages", "application/json", plainBody(`1`), 405, "method_not_allowed"},
		{"DELETE on a user's messages is not allowed", "DELETE", "/v1/users/bob/messages", "", nil, 405, "method_not_allowed"},
		{"PATCH on a user's messages is not allowed", "PATCH", "/v1/users/bob/messages", "application/json", plainBody(`1`), 405, "method_not_allowed"},
		{"an unknown path under /v1 is not found", "GET", "/v1/nope", "", nil, 404, "not_found"},
		{"an unknown top-level path is not found", "GET", "/nope", "", nil, 404, "not_found"},
		{"a POST to a user without messages is not found", "POST", "/v1/users/bob", "application/json", plainBody(`1`), 404, "not_found"},
		{"a path past a user's messages is not found", "POST", "/v1/users/bob/messages/x", "application/json", plainBody(`1`), 404, "not_found"},
		{"history since a word is refused", "GET", "/v1/users/bob/messages?since=abc", "", nil, 400, "bad_request"},
		{"history since an id of three parts is refused", "GET", "/v1/users/bob/messages?since=1-2-3", "", nil, 400, "bad_request"},
		{"history since a negative id is refused", "GET", "/v1/users/bob/messages?since=-1", "", nil, 400, "bad_request"},
		{"history since an id past the 64-bit range is refused", "GET", "/v1/users/bob/messages?since=18446744073709551616-0", "", nil, 400, "bad_request"},
		{"history with limit 0 is refused", "GET", "/v1/users/bob/messages?limit=0", "", nil, 400, "bad_request"},
		{"history with limit 1001 is refused", "GET", "/v1/users/bob/messages?limit=1001", "", nil, 400, "bad_request"},
		{"history with a negative limit is refused", "GET", "/v1/users/bob/messages?limit=-1", "", nil, 400, "bad_request"},
		{"history with limit abc is refused", "GET", "/v1/users/bob/messages?limit=abc", "", nil, 400, "bad_request"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var rd io.Reader
			if tc.body != nil {
				rd = tc.body()
			}
			r := do(t, tc.method, n.base+tc.path, tc.contentType, rd)
			checkRefusal(t, r, tc.status, tc.code)
			b.checkUntouched(t)
		})
	}
}

func TestMethodNotAllowedNamesTheAllowedMethods(t *testing.T) {
	srv, _ := startRedis(t)
	n := startNode(t, onRedis(srv), "a")
	r := do(t, "PUT", n.base+"/v1/users/bob/messages", "application/json", strings.NewReader(`1`))
	checkRefusal(t, r, http.StatusMethodNotAllowed, "method_not_allowed")
	if got := r.header.Values("Allow"); !slices.Equal(got, []string{"GET", "POST"}) {
		t.Fatalf("Allow %v, want [GET POST] (RFC 9110 §15.5.6: a 405 must name the allowed methods)", got)
	}
}

func TestPayloadOfExactlyMaxMessageBytesIsAccepted(t *testing.T) {
	srv, _ := startRedis(t)
	n := startNode(t, onRedis(srv), "a", smallMessages)
	b := newBystanders(t, n)
	exact := `"` + strings.Repeat("x", refusalMaxBytes-2) + `"`
	cases := []struct {
		name string
		body func() io.Reader
	}{
		{"with a Content-Length", plainBody(exact)},
		{"with chunked transfer encoding", chunkedBody(exact)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, "POST", n.base+"/v1/users/bob/messages", "application/json", tc.body())
			if r.status != http.StatusAccepted {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			id, _ := r.json(t)["id"].(string)
			m := next(t, b.bob, "message")
			if m.ID != id || string(m.Data) != exact {
				t.Fatalf("bob got %.80s..., want message %s with the %d-byte payload", m.Raw, id, refusalMaxBytes)
			}
			b.last = id
			b.checkUntouched(t)
		})
	}
}

func TestKeysGuardV1AndAdmin(t *testing.T) {
	const apiKey, adminKey = "api-secret", "admin-secret"
	srv, _ := startRedis(t)
	n := startNode(t, onRedis(srv), "a", func(o *nodeOptions) {
		o.service.APIKey = apiKey
		o.service.AdminKey = adminKey
	})
	b := newBystanders(t, n, "Authorization", "Bearer "+apiKey)
	cases := []struct {
		name          string
		method, path  string
		authorization string // "" sends none
		status        int
	}{
		{"a POST without Authorization is refused", "POST", "/v1/users/bob/messages", "", 401},
		{"a POST with a wrong key is refused", "POST", "/v1/users/bob/messages", "Bearer nope", 401},
		{"a POST with the admin key is refused", "POST", "/v1/users/bob/messages", "Bearer " + adminKey, 401},
		{"a POST with a prefix of the key is refused", "POST", "/v1/users/bob/messages", "Bearer " + apiKey[:len(apiKey)-1], 401},
		{"a POST with the key and more is refused", "POST", "/v1/users/bob/messages", "Bearer " + apiKey + "x", 401},
		{"a POST with the key as Basic credentials is refused", "POST", "/v1/users/bob/messages", "Basic " + apiKey, 401},
		{"a POST with the bare key is refused", "POST", "/v1/users/bob/messages", apiKey, 401},
		{"a POST with an empty bearer is refused", "POST", "/v1/users/bob/messages", "Bearer ", 401},
		{"a history read without a key is refused", "GET", "/v1/users/bob/messages", "", 401},
		{"an unknown /v1 path without a key is refused", "GET", "/v1/nope", "", 401},
		{"a wrong method on a /v1 path without a key is refused", "PUT", "/v1/users/bob/messages", "", 401},
		{"a POST with the key is accepted", "POST", "/v1/users/bob/messages", "Bearer " + apiKey, 202},
		{"a POST with a lowercase bearer scheme is accepted", "POST", "/v1/users/bob/messages", "bearer " + apiKey, 202},
		{"admin without a key is refused", "GET", "/admin/subscriptions", "", 401},
		{"admin with the API key is refused", "GET", "/admin/subscriptions", "Bearer " + apiKey, 401},
		{"admin with a wrong key is refused", "GET", "/admin/subscriptions", "Bearer nope", 401},
		{"admin with the admin key is served", "GET", "/admin/subscriptions", "Bearer " + adminKey, 200},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var rd io.Reader
			if tc.method == "POST" {
				rd = strings.NewReader(`{"k":1}`)
			}
			var hdr []string
			if tc.authorization != "" {
				hdr = []string{"Authorization", tc.authorization}
			}
			r := do(t, tc.method, n.base+tc.path, "application/json", rd, hdr...)
			switch tc.status {
			case http.StatusUnauthorized:
				checkRefusal(t, r, 401, "unauthorized")
				if h := r.header.Get("WWW-Authenticate"); !strings.HasPrefix(h, "Bearer") {
					t.Fatalf("WWW-Authenticate %q, want a Bearer challenge", h)
				}
			case http.StatusAccepted:
				if r.status != 202 {
					t.Fatalf("status %d, want 202: %s", r.status, r.body)
				}
				id, _ := r.json(t)["id"].(string)
				if m := next(t, b.bob, "message"); m.ID != id {
					t.Fatalf("bob got %s, want message %s", m.Raw, id)
				}
				b.last = id
			default:
				if r.status != tc.status {
					t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
				}
				if node, _ := r.json(t)["node"].(string); node != "a" {
					t.Fatalf("admin answer: %s", r.body)
				}
			}
			b.checkUntouched(t)
		})
	}
}

func TestPostWhileRedisIsDownIsRefusedAndLeavesNoTrace(t *testing.T) {
	cases := []struct {
		name   string
		down   func(*redistest.Server)
		up     func(*testing.T, *redistest.Server)
		within time.Duration // how soon the refusal must come
	}{
		{"a killed Redis refuses at once", (*redistest.Server).Stop,
			func(t *testing.T, s *redistest.Server) { s.Restart(t) }, 3 * time.Second},
		{"a frozen Redis refuses after the read timeout", (*redistest.Server).Freeze,
			func(_ *testing.T, s *redistest.Server) { s.Thaw() }, 5 * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// Append-only with fsync on every write, so that what Redis held before it died
			// is back after a restart and "nothing was stored" is a real check, not a wiped
			// database.
			srv := redistest.Start(t, redistest.WithArgs("--appendonly", "yes", "--appendfsync", "always"))
			n := startNode(t, onRedis(srv), "a")
			b := &bystanders{n: n}
			before := b.post(t, "bob", `{"n":1}`)

			tc.down(srv)
			start := time.Now()
			r := do(t, "POST", n.base+"/v1/users/bob/messages", "application/json", strings.NewReader(`{"n":2}`))
			checkRefusal(t, r, http.StatusServiceUnavailable, "unavailable")
			if d := time.Since(start); d > tc.within {
				t.Fatalf("the refusal took %s; a backend must learn within %s that nothing was accepted", d, tc.within)
			}
			testutil.WaitFor(t, 5*time.Second, func() bool {
				return do(t, "GET", n.base+"/readyz", "", nil).status == http.StatusServiceUnavailable
			}, "/readyz to turn 503 while Redis is down")

			tc.up(t, srv)
			testutil.WaitFor(t, 10*time.Second, func() bool {
				return do(t, "GET", n.base+"/readyz", "", nil).status == http.StatusOK
			}, "/readyz to turn 200 after Redis came back")
			got := b.history(t, "bob", "")
			if len(got) != 1 || got[0] != before {
				t.Fatalf("bob's stream holds %v, want only %s from before the outage", got, before)
			}
			bob, _ := connect(t, n, "bob", "since", before)
			after := b.post(t, "bob", `{"n":3}`)
			if m := next(t, bob, "message"); m.ID != after || string(m.Data) != `{"n":3}` {
				t.Fatalf("after the outage bob got %s, want message %s", m.Raw, after)
			}
			if got := b.history(t, "bob", ""); len(got) != 2 || got[0] != before || got[1] != after {
				t.Fatalf("bob's stream holds %v, want [%s %s]", got, before, after)
			}
		})
	}
}

// refusedDial opens a WebSocket that the server must refuse, and returns the refusal.
func refusedDial(t *testing.T, u string, header http.Header) *wsclient.ErrRefused {
	t.Helper()
	c, err := wsclient.Dial(u, wsclient.Options{Header: header})
	if err == nil {
		c.Close()
		t.Fatalf("the upgrade of %s was accepted, want a refusal", u)
	}
	var refused *wsclient.ErrRefused
	if !errors.As(err, &refused) {
		t.Fatalf("dial %s: %v, want an HTTP refusal", u, err)
	}
	return refused
}

// checkRefusedUpgrade asserts a refused upgrade's status and JSON error code.
func checkRefusedUpgrade(t *testing.T, refused *wsclient.ErrRefused, status int, code string) {
	t.Helper()
	checkRefusal(t, response{status: refused.Status, body: []byte(refused.Body),
		header: http.Header{"Content-Type": {"application/json"}}}, status, code)
}

// acceptedDial opens a WebSocket that the server must accept and returns its welcome.
func acceptedDial(t *testing.T, u string, header http.Header) wsclient.Frame {
	t.Helper()
	c, err := wsclient.Dial(u, wsclient.Options{Header: header})
	if err != nil {
		t.Fatalf("dial %s: %v", u, err)
	}
	t.Cleanup(c.Close)
	return next(t, c, "welcome")
}

func TestWebSocketUpgradeRefusalsInDevMode(t *testing.T) {
	srv, _ := startRedis(t)
	n := startNode(t, onRedis(srv), "a")
	b := newBystanders(t, n)
	cases := []struct {
		name   string
		query  string
		status int
		code   string
	}{
		{"no user is unauthorized", "", 401, "unauthorized"},
		{"an empty user is unauthorized", "user=", 401, "unauthorized"},
		{"a user with a space is refused", "user=b%20ob", 400, "invalid_id"},
		{"a user with a colon is refused", "user=bob:x", 400, "invalid_id"},
		{"a user of 129 characters is refused", "user=" + strings.Repeat("b", 129), 400, "invalid_id"},
		{"a token instead of a user is unauthorized in dev mode", "token=whatever", 401, "unauthorized"},
		{"since a word is refused", "user=dave&since=abc", 400, "bad_request"},
		{"since an id of three parts is refused", "user=dave&since=1-2-3", 400, "bad_request"},
		{"since a negative id is refused", "user=dave&since=-1", 400, "bad_request"},
		{"since an id with a letter is refused", "user=dave&since=1-x", 400, "bad_request"},
		{"since an id past the 64-bit range is refused", "user=dave&since=1-18446744073709551616", 400, "bad_request"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			checkRefusedUpgrade(t, refusedDial(t, n.wsURL(tc.query), nil), tc.status, tc.code)
			b.checkUntouched(t)
		})
	}
}

// mintToken signs claims with secret by method.
func mintToken(t *testing.T, method jwt.SigningMethod, secret any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(secret)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestWebSocketTokens(t *testing.T) {
	secret := []byte("jwt-secret-for-tests")
	srv, _ := startRedis(t)
	n := startNode(t, onRedis(srv), "a", withSecret(t, secret))
	// The bystanders connect with tokens too: dev auth is off.
	b := &bystanders{n: n}
	hour := time.Now().Add(time.Hour).Unix()
	valid := func(sub string) string {
		return mintToken(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": sub, "exp": hour})
	}
	for _, u := range []string{"bob", "carol"} {
		c, err := wsclient.Dial(n.wsURL("token="+valid(u)), wsclient.Options{})
		if err != nil {
			t.Fatalf("dial as %s: %v", u, err)
		}
		t.Cleanup(c.Close)
		next(t, c, "welcome")
		if u == "bob" {
			b.bob = c
		} else {
			b.carol = c
		}
	}

	refusals := []struct {
		name  string
		query string
		auth  string // Authorization header
	}{
		{"no token is unauthorized", "", ""},
		{"a dev user without a token is unauthorized", "user=dave", ""},
		{"a garbage token is unauthorized", "token=not.a.jwt", ""},
		{"a token signed with another secret is unauthorized", "token=" + mintToken(t, jwt.SigningMethodHS256, []byte("other"), jwt.MapClaims{"sub": "dave", "exp": hour}), ""},
		{"an expired token is unauthorized", "token=" + mintToken(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "dave", "exp": time.Now().Add(-5 * time.Minute).Unix()}), ""},
		{"a token not valid yet is unauthorized", "token=" + mintToken(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "dave", "nbf": time.Now().Add(5 * time.Minute).Unix()}), ""},
		{"a token whose sub is not a valid id is unauthorized", "token=" + valid("dave:x"), ""},
		{"a token without sub is unauthorized", "token=" + mintToken(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"exp": hour}), ""},
		{"a token with alg none is unauthorized", "token=" + mintToken(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, jwt.MapClaims{"sub": "dave", "exp": hour}), ""},
		{"a token signed with HS512 is unauthorized", "token=" + mintToken(t, jwt.SigningMethodHS512, secret, jwt.MapClaims{"sub": "dave", "exp": hour}), ""},
		{"a garbage bearer header is unauthorized", "", "Bearer not.a.jwt"},
		{"a valid token under the Basic scheme is unauthorized", "", "Basic " + valid("dave")},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			if tc.auth != "" {
				h.Set("Authorization", tc.auth)
			}
			checkRefusedUpgrade(t, refusedDial(t, n.wsURL(tc.query), h), 401, "unauthorized")
			b.checkUntouched(t)
		})
	}

	accepted := []struct {
		name  string
		query string
		auth  string
		user  string
	}{
		{"a valid token in the query opens the socket as its sub", "token=" + valid("dave"), "", "dave"},
		{"a valid token in a bearer header opens the socket as its sub", "", "Bearer " + valid("erin"), "erin"},
		{"a token within the clock-skew leeway is accepted", "token=" + mintToken(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "frank", "exp": time.Now().Add(-5 * time.Second).Unix()}), "", "frank"},
		{"a dev user parameter cannot override the token's sub", "user=mallory&token=" + valid("gina"), "", "gina"},
	}
	for _, tc := range accepted {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			if tc.auth != "" {
				h.Set("Authorization", tc.auth)
			}
			if w := acceptedDial(t, n.wsURL(tc.query), h); w.User != tc.user {
				t.Fatalf("welcome %s, want user %s", w.Raw, tc.user)
			}
			b.checkUntouched(t)
		})
	}
}

func TestWebSocketOrigins(t *testing.T) {
	// One Redis each, so that the bystanders of one node are not the users of the other.
	srv1, _ := startRedis(t)
	srv2, _ := startRedis(t)
	sameOrigin := startNode(t, onRedis(srv1), "same")
	listed := startNode(t, onRedis(srv2), "listed", func(o *nodeOptions) {
		o.service.AllowedOrigins = []string{"https://app.example"}
	})
	watching := map[*node]*bystanders{sameOrigin: newBystanders(t, sameOrigin), listed: newBystanders(t, listed)}
	cases := []struct {
		name   string
		n      *node
		origin string // "" sends none
		ok     bool
	}{
		{"by default a foreign origin is forbidden", sameOrigin, "http://evil.example", false},
		{"by default another port of the same host is forbidden", sameOrigin, "http://127.0.0.1:1", false},
		{"by default a look-alike host is forbidden", sameOrigin, sameOrigin.base + ".evil.example", false},
		{"by default the null origin is forbidden", sameOrigin, "null", false},
		{"by default the node's own origin is allowed", sameOrigin, sameOrigin.base, true},
		{"by default a request without an Origin is allowed", sameOrigin, "", true},
		{"a listed origin is allowed", listed, "https://app.example", true},
		{"a listed origin is not allowed over another scheme", listed, "http://app.example", false},
		{"an unlisted origin is forbidden", listed, "https://evil.example", false},
		{"a subdomain of a listed origin is forbidden", listed, "https://x.app.example", false},
		{"with a list a request without an Origin is allowed", listed, "", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			if tc.origin != "" {
				h.Set("Origin", tc.origin)
			}
			u := tc.n.wsURL("user=dave")
			if tc.ok {
				if w := acceptedDial(t, u, h); w.User != "dave" {
					t.Fatalf("welcome %s", w.Raw)
				}
			} else {
				checkRefusedUpgrade(t, refusedDial(t, u, h), 403, "forbidden")
			}
			watching[tc.n].checkUntouched(t)
		})
	}
}

func TestWebSocketFrameRefusalsKeepTheConnectionUsable(t *testing.T) {
	srv, _ := startRedis(t)
	n := startNode(t, onRedis(srv), "a", smallMessages)
	b := newBystanders(t, n)
	alice, _ := connect(t, n, "alice")
	overData := `"` + strings.Repeat("x", refusalMaxBytes) + `"` // one byte over
	cases := []struct {
		name   string
		frame  string
		binary bool
		code   string
		ref    string // "" when the frame's ref cannot be read
	}{
		{"a frame that is not JSON is refused", `hello`, false, "bad_json", ""},
		{"a JSON array is refused", `[{"type":"send","to":"bob","data":1}]`, false, "bad_json", ""},
		{"a JSON string is refused", `"send"`, false, "bad_json", ""},
		{"JSON null is refused", `null`, false, "bad_json", ""},
		{"a truncated object is refused", `{"type":"send","to":"bob","data":1`, false, "bad_json", ""},
		{"a frame without a type is refused", `{"to":"bob","data":1,"ref":"r1"}`, false, "bad_request", "r1"},
		{"a frame of an unknown type is refused", `{"type":"publish","to":"bob","data":1,"ref":"r2"}`, false, "unknown_type", "r2"},
		{"a type that is not a string is refused", `{"type":1,"ref":"r3"}`, false, "bad_request", "r3"},
		{"a null type is refused", `{"type":null,"ref":"r3n"}`, false, "bad_request", "r3n"},
		{"a ref that is not a string is refused", `{"type":"send","to":"bob","data":1,"ref":7}`, false, "bad_request", ""},
		{"a ref over 64 characters is refused", `{"type":"send","to":"bob","data":1,"ref":"` + strings.Repeat("r", 65) + `"}`, false, "bad_request", ""},
		{"a send without data is refused", `{"type":"send","to":"bob","ref":"r4"}`, false, "bad_request", "r4"},
		{"a send with both to and room is refused", `{"type":"send","to":"bob","room":"lobby","data":1,"ref":"r5"}`, false, "bad_request", "r5"},
		{"a send with neither to nor room is refused", `{"type":"send","data":1,"ref":"r6"}`, false, "bad_request", "r6"},
		{"a send to an invalid id is refused", `{"type":"send","to":"bob:x","data":1,"ref":"r7"}`, false, "invalid_id", "r7"},
		{"a send whose to is not a string is refused", `{"type":"send","to":["bob"],"data":1,"ref":"r7s"}`, false, "bad_request", "r7s"},
		{"a send that sets its own from is refused", `{"type":"send","to":"bob","from":"mallory","data":1,"ref":"r8"}`, false, "bad_request", "r8"},
		{"a send with an unknown field is refused", `{"type":"send","to":"bob","data":1,"extra":true,"ref":"r9"}`, false, "bad_request", "r9"},
		{"a join without a room is refused", `{"type":"join","ref":"r10"}`, false, "invalid_id", "r10"},
		{"a join of an invalid room is refused", `{"type":"join","room":"lob by","ref":"r11"}`, false, "invalid_id", "r11"},
		{"a leave of an invalid room is refused", `{"type":"leave","room":"{lobby}","ref":"r12"}`, false, "invalid_id", "r12"},
		{"an event with an invalid name is refused", `{"type":"event","name":"order paid","data":1,"ref":"r13"}`, false, "invalid_id", "r13"},
		{"an event without a name is refused", `{"type":"event","data":1,"ref":"r14"}`, false, "invalid_id", "r14"},
		{"data over the limit is refused", `{"type":"send","to":"bob","data":` + overData + `,"ref":"r15"}`, false, "too_large", "r15"},
		{"a binary frame is refused", `{"type":"send","to":"bob","data":1,"ref":"r16"}`, true, "bad_request", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.binary {
				must(t, alice.SendBinary([]byte(tc.frame)))
			} else {
				must(t, alice.SendRaw([]byte(tc.frame)))
			}
			e := next(t, alice, "error")
			if e.Code != tc.code || e.Ref != tc.ref || e.Message == "" {
				t.Fatalf("got %s, want an error with code %q and ref %q", e.Raw, tc.code, tc.ref)
			}
			must(t, alice.SendRaw([]byte(`{"type":"send","to":"x","data":1,"ref":"ok"}`)))
			if ack := next(t, alice, "ack"); ack.Ref != "ok" || ack.ID == "" {
				t.Fatalf("after the refusal a valid send got %s, want its ack", ack.Raw)
			}
			b.checkUntouched(t)
		})
	}
}

func TestDataOfExactlyMaxMessageBytesIsAcceptedOnTheWebSocket(t *testing.T) {
	srv, _ := startRedis(t)
	n := startNode(t, onRedis(srv), "a", smallMessages)
	b := newBystanders(t, n)
	alice, _ := connect(t, n, "alice")
	exact := `"` + strings.Repeat("x", refusalMaxBytes-2) + `"`
	must(t, alice.SendRaw([]byte(`{"type":"send","to":"bob","data":`+exact+`,"ref":"r"}`)))
	ack := next(t, alice, "ack")
	if m := next(t, b.bob, "message"); m.ID != ack.ID || string(m.Data) != exact {
		t.Fatalf("bob got %.80s..., want message %s", m.Raw, ack.ID)
	}
	b.last = ack.ID
	b.checkUntouched(t)
}

func TestWebSocketFramesThatBreakTheProtocolCloseOnlyTheirConnection(t *testing.T) {
	srv, _ := startRedis(t)
	n := startNode(t, onRedis(srv), "a", smallMessages)
	b := newBystanders(t, n)
	cases := []struct {
		name  string
		frame []byte
		code  uint16
	}{
		{"a frame over the read limit closes with 1009", []byte(`{"type":"send","to":"bob","data":"` + strings.Repeat("x", refusalMaxBytes+4096) + `"}`), 1009},
		{"a text frame that is not UTF-8 closes with 1007", []byte(`{"type":"send","to":"bob","data":"caf` + "\xe9" + `"}`), 1007},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := n.hub.Stats().Connections
			c, _ := connect(t, n, "mallory")
			must(t, c.SendRaw(tc.frame))
			select {
			case <-c.Done():
			case <-time.After(5 * time.Second):
				t.Fatal("the connection is still open")
			}
			if code, err := c.CloseCode(); code != tc.code {
				t.Fatalf("close code %d (%v), want %d", code, err, tc.code)
			}
			testutil.WaitFor(t, 5*time.Second, func() bool { return n.hub.Stats().Connections == before }, "the node to release the closed connection")
			b.checkUntouched(t)
		})
	}
}

func TestPlainRequestsToTheWebSocketEndpointAreRefusedWithJSON(t *testing.T) {
	srv, _ := startRedis(t)
	n := startNode(t, onRedis(srv), "a")
	b := newBystanders(t, n)
	cases := []struct {
		name   string
		method string
		header []string
		status []int // acceptable statuses
		code   string
	}{
		{"a POST is not allowed", "POST", nil, []int{405}, "method_not_allowed"},
		{"a GET without the upgrade headers is refused", "GET", nil, []int{400, 426}, "bad_request"},
		{"an upgrade of an unsupported WebSocket version is refused", "GET", []string{
			"Connection", "Upgrade", "Upgrade", "websocket", "Sec-WebSocket-Version", "8", "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==",
		}, []int{400, 426}, "bad_request"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, tc.method, n.base+"/ws?user=dave", "", nil, tc.header...)
			if !slices.Contains(tc.status, r.status) {
				t.Fatalf("status %d, want one of %v: %q", r.status, tc.status, r.body)
			}
			checkRefusal(t, r, r.status, tc.code)
			b.checkUntouched(t)
		})
	}
}

// A request that passes our checks but not gws's (HEAD reaches /ws through chi's GetHead)
// still gets gws's 400: the connection that holds gws's first write must not swallow it.
func TestUpgradeRefusedByGwsIsAnswered(t *testing.T) {
	srv, _ := startRedis(t)
	n := startNode(t, onRedis(srv), "a")
	conn, err := net.Dial("tcp", strings.TrimPrefix(n.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, _ = conn.Write([]byte("HEAD /ws?user=bob HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"))
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, _ := io.ReadAll(conn)
	if !strings.HasPrefix(string(got), "HTTP/1.1 400") {
		t.Fatalf("answer %q, want gws's 400", got)
	}
}
