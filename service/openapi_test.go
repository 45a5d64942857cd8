package service_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
	"github.com/go-chi/chi/v5"

	"github.com/switchboard-dev/switchboard/service"
)

// openAPI is the served document, loaded and validated once for every test that checks an
// answer against it.
var openAPI = sync.OnceValues(func() (routers.Router, error) {
	doc, err := loadOpenAPI()
	if err != nil {
		return nil, err
	}
	return legacy.NewRouter(doc)
})

func loadOpenAPI() (*openapi3.T, error) {
	doc, err := openapi3.NewLoader().LoadFromData(service.OpenAPI())
	if err != nil {
		return nil, err
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, err
	}
	return doc, nil
}

func TestOpenAPIDocumentIsValid(t *testing.T) {
	doc, err := loadOpenAPI()
	if err != nil {
		t.Fatal(err)
	}
	if doc.OpenAPI != "3.1.0" {
		t.Errorf("openapi = %q, want 3.1.0", doc.OpenAPI)
	}
	// Every operation says what its refusals look like: the error envelope, by reference.
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			if op.OperationID == "" {
				t.Errorf("%s %s has no operationId", method, path)
			}
			for status, res := range op.Responses.Map() {
				if status[0] < '4' {
					continue
				}
				ct := res.Value.Content.Get("application/json")
				if ct == nil || ct.Schema == nil || ct.Schema.Ref != "#/components/schemas/Error" {
					t.Errorf("%s %s: answer %s is not the error envelope", method, path, status)
				}
			}
		}
	}
}

// TestOpenAPIAgreesWithRouter checks both ways: every /v1 and /admin route of the router is
// documented with its method, and every documented path and method is routed.
func TestOpenAPIAgreesWithRouter(t *testing.T) {
	doc, err := loadOpenAPI()
	if err != nil {
		t.Fatal(err)
	}
	n := startNode(t, singleRedis(t), "n1")
	routes, ok := n.srv.Handler().(chi.Routes)
	if !ok {
		t.Fatalf("the handler is a %T, not a chi router", n.srv.Handler())
	}
	routed := map[string]bool{}
	err = chi.Walk(routes, func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		if strings.HasPrefix(route, "/v1/") || strings.HasPrefix(route, "/admin") {
			routed[method+" "+route] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			documented[method+" "+path] = true
		}
	}
	if len(routed) < 12 {
		t.Fatalf("walked only %d API routes: %v", len(routed), routed)
	}
	for _, r := range sortedKeys(routed) {
		if !documented[r] {
			t.Errorf("routed but not in openapi.json: %s", r)
		}
	}
	for _, d := range sortedKeys(documented) {
		if !routed[d] {
			t.Errorf("in openapi.json but not routed: %s", d)
		}
	}
}

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func TestOpenAPIServedWithoutKey(t *testing.T) {
	n := startNode(t, singleRedis(t), "n1", func(o *nodeOptions) { o.service.APIKey = "k" })
	r := do(t, "GET", n.base+"/v1/openapi.json", "", nil)
	if r.status != http.StatusOK || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /v1/openapi.json: %d %q", r.status, r.header.Get("Content-Type"))
	}
	if !bytes.Equal(r.body, service.OpenAPI()) {
		t.Fatal("the served document is not the embedded one")
	}
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil || m["openapi"] != "3.1.0" {
		t.Fatalf("served document: %v, openapi %v", err, m["openapi"])
	}
	// Only the document is public: the rest of /v1 still wants the key, even for a 405.
	for _, c := range []struct{ method, path string }{
		{"GET", "/v1/users/bob/presence"},
		{"POST", "/v1/openapi.json"},
	} {
		if r := do(t, c.method, n.base+c.path, "", nil); r.status != http.StatusUnauthorized || r.errorCode(t) != "unauthorized" {
			t.Errorf("%s %s without the key: %d %s", c.method, c.path, r.status, r.body)
		}
	}
}

// checkOpenAPI checks an answer of the API against the OpenAPI document: its status must be
// documented for the operation, and its body and headers must match. Answers of paths the
// document has no operation for (an unknown path: 404, another method: 405) must still be
// the error envelope. Paths outside /v1 and /admin are not checked.
func checkOpenAPI(t testing.TB, method, u string, res response) {
	t.Helper()
	if err := validateOpenAPI(method, u, res); err != nil {
		t.Errorf("%s %s answered %d %s: not as openapi.json describes: %v", method, u, res.status, res.body, err)
	}
}

func validateOpenAPI(method, u string, res response) error {
	pu, err := url.Parse(u)
	if err != nil {
		return err
	}
	if !strings.HasPrefix(pu.Path, "/v1/") && !strings.HasPrefix(pu.Path, "/admin") {
		return nil
	}
	router, err := openAPI()
	if err != nil {
		return err
	}
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		return err
	}
	route, params, err := router.FindRoute(req)
	if err != nil {
		var re *routers.RouteError
		if !errors.As(err, &re) {
			return err
		}
		// An id with an encoded slash matches no documented path but reaches a handler,
		// which refuses it with 400.
		switch res.status {
		case http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden,
			http.StatusNotFound, http.StatusMethodNotAllowed:
		default:
			return errors.New("the path or method is not documented, yet it was not refused")
		}
		var e struct {
			Error struct{ Code, Message string }
		}
		if json.Unmarshal(res.body, &e) != nil || e.Error.Code == "" || e.Error.Message == "" {
			return errors.New("a refusal without the error envelope")
		}
		return nil
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
		Status:                 res.status,
		Header:                 res.header,
		Body:                   io.NopCloser(bytes.NewReader(res.body)),
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	return openapi3filter.ValidateResponse(context.Background(), in)
}

// TestEveryRouteAnswersAsDocumented calls each documented operation for its success and
// its refusals; do checks every answer against the document.
func TestEveryRouteAnswersAsDocumented(t *testing.T) {
	n := startNode(t, singleRedis(t), "n1", func(o *nodeOptions) {
		o.service.APIKey, o.service.AdminKey = "k", "adm"
		o.service.MaxMessageBytes = 64
		o.subscriptions.MaxRoomsPerUser = 1
	})
	key := []string{"Authorization", "Bearer k"}
	wrong := []string{"Authorization", "Bearer nope"}
	admin := []string{"Authorization", "Bearer adm"}
	big := strings.Repeat("x", 65)
	cases := []struct {
		method, path, ct, body string
		header                 []string
		status                 int
	}{
		{"GET", "/v1/openapi.json", "", "", nil, 200},
		{"PUT", "/v1/rooms/lobby/members/bob", "", "", key, 204},
		{"PUT", "/v1/rooms/lobby/members/bob", "", "", key, 204},
		{"PUT", "/v1/rooms/other/members/bob", "", "", key, 429},
		{"PUT", "/v1/rooms/lobby/members/b%20b", "", "", key, 400},
		{"PUT", "/v1/rooms/lobby/members/bob", "", "", wrong, 401},
		{"GET", "/v1/rooms/lobby/members", "", "", key, 200},
		{"GET", "/v1/rooms/nowhere/members", "", "", key, 200},
		{"GET", "/v1/rooms/lobby/members", "", "", nil, 401},
		{"GET", "/v1/users/bob/rooms", "", "", key, 200},
		{"GET", "/v1/users/b%21/rooms", "", "", key, 400},
		{"POST", "/v1/users/bob/messages", "application/json", `{"n":1}`, key, 202},
		{"POST", "/v1/users/bob/messages?from=svc", "text/plain", "hi", key, 202},
		{"POST", "/v1/users/bob/messages", "application/octet-stream", "\x00\x01", key, 202},
		{"POST", "/v1/users/bob/messages", "", "raw", key, 202},
		{"POST", "/v1/users/bob/messages", "application/json", `{"n":`, key, 400},
		{"POST", "/v1/users/bob/messages", "application/json", `"` + big + `"`, key, 413},
		{"POST", "/v1/users/bob/messages", "text/plain; charset=latin1", "hi", key, 415},
		{"POST", "/v1/users/bob/messages", "application/json", `1`, wrong, 401},
		{"POST", "/v1/rooms/lobby/messages", "application/json", `{"n":2}`, key, 202},
		{"POST", "/v1/rooms/lobby/messages?ephemeral=true", "application/json", `{"typing":true}`, key, 202},
		{"POST", "/v1/rooms/lobby/messages?ephemeral=yes", "application/json", `1`, key, 400},
		{"POST", "/v1/users/bob/messages?ephemeral=true", "text/plain", "typing", key, 202},
		{"POST", "/v1/users/bob/messages?ephemeral=false", "application/json", `1`, key, 202},
		{"POST", "/v1/users/bob/messages?ephemeral=1", "application/json", `1`, key, 400},
		{"GET", "/v1/rooms/lobby/messages", "", "", key, 200},
		{"GET", "/v1/rooms/lobby/messages?since=0-0&limit=1", "", "", key, 200},
		{"GET", "/v1/rooms/lobby/messages?before=99999999999999-0&limit=1000", "", "", key, 200},
		{"GET", "/v1/rooms/nowhere/messages", "", "", key, 200},
		{"GET", "/v1/rooms/lobby/messages?since=0-0&before=1-0", "", "", key, 400},
		{"GET", "/v1/rooms/lobby/messages?limit=0", "", "", key, 400},
		{"GET", "/v1/rooms/lobby/messages?before=soon", "", "", key, 400},
		{"GET", "/v1/rooms/l%20bby/messages", "", "", key, 400},
		{"GET", "/v1/rooms/lobby/messages", "", "", wrong, 401},
		{"GET", "/v1/rooms/lobby/presence", "", "", key, 200},
		{"GET", "/v1/rooms/nowhere/presence", "", "", key, 200},
		{"GET", "/v1/rooms/l%21/presence", "", "", key, 400},
		{"GET", "/v1/rooms/lobby/presence", "", "", nil, 401},
		{"POST", "/v1/rooms/lobby/messages?from=a%20b", "application/json", `1`, key, 400},
		{"POST", "/v1/rooms/lobby/messages", "text/plain", big, key, 413},
		{"POST", "/v1/rooms/lobby/messages", "bad/type/x", "1", key, 415},
		{"POST", "/v1/messages", "application/json", `{"messages":[{"user":"bob","data":3},{"room":"lobby","data_b64":"AA=="}]}`, key, 202},
		{"POST", "/v1/messages", "application/json", `{"messages":[{"user":"bob"}]}`, key, 400},
		{"POST", "/v1/messages", "application/json", `{"messages":[{"user":"bob","data":"` + big + `"}]}`, key, 413},
		{"POST", "/v1/messages", "application/json", `{"messages":[]}`, nil, 401},
		{"GET", "/v1/users/bob/messages", "", "", key, 200},
		{"GET", "/v1/users/bob/messages?limit=2&since=0-0", "", "", key, 200},
		{"GET", "/v1/users/bob/messages?limit=1001", "", "", key, 400},
		{"GET", "/v1/users/bob/messages?since=yesterday", "", "", key, 400},
		{"GET", "/v1/users/bob/presence", "", "", key, 200},
		{"GET", "/v1/users/bob/presence", "", "", wrong, 401},
		{"DELETE", "/v1/users/bob/connections", "", "", key, 200},
		{"DELETE", "/v1/users/bob/connections?revoke=true", "", "", key, 200},
		{"DELETE", "/v1/users/bob/connections?revoke=maybe", "", "", key, 400},
		{"DELETE", "/v1/rooms/lobby/members/bob", "", "", key, 204},
		{"DELETE", "/v1/rooms/lobby/members/bob", "", "", key, 204},
		{"DELETE", "/v1/rooms/lobby/members/bob", "", "", nil, 401},
		{"PATCH", "/v1/rooms/lobby/members/bob", "", "", key, 405},
		{"GET", "/v1/nothing/here", "", "", key, 404},
		{"GET", "/admin/subscriptions", "", "", admin, 200},
		{"GET", "/admin/subscriptions?scope=cluster&limit=10", "", "", admin, 200},
		{"GET", "/admin/subscriptions?scope=planet", "", "", admin, 400},
		{"GET", "/admin/subscriptions", "", "", key, 401},
		{"GET", "/admin/", "", "", nil, 404}, // no web assets in the test node
	}
	for _, c := range cases {
		var body io.Reader
		if c.body != "" {
			body = strings.NewReader(c.body)
		}
		r := do(t, c.method, n.base+c.path, c.ct, body, c.header...)
		if r.status != c.status {
			t.Errorf("%s %s (%s): %d %s, want %d", c.method, c.path, c.ct, r.status, r.body, c.status)
		}
	}
}

// TestOpenAPICheckRefusesWrongAnswers shows the check can fail: answers that break the
// document are caught.
func TestOpenAPICheckRefusesWrongAnswers(t *testing.T) {
	const base = "http://127.0.0.1:1"
	jsonHeader := http.Header{"Content-Type": {"application/json"}}
	for _, c := range []struct {
		name, method, path string
		res                response
	}{
		{"an undocumented status", "GET", "/v1/users/bob/presence", response{status: 418, body: []byte(`{"error":{"code":"internal","message":"x"}}`), header: jsonHeader}},
		{"a field of the wrong type", "GET", "/v1/users/bob/presence", response{status: 200, body: []byte(`{"online":"yes","connections":1}`), header: jsonHeader}},
		{"a missing field", "POST", "/v1/rooms/r/messages", response{status: 202, body: []byte(`{}`), header: jsonHeader}},
		{"a malformed message id", "POST", "/v1/users/bob/messages", response{status: 202, body: []byte(`{"id":"x"}`), header: jsonHeader}},
		{"an error without its envelope", "POST", "/v1/users/bob/messages", response{status: 400, body: []byte(`{"code":"bad_json"}`), header: jsonHeader}},
		{"an unknown error code", "GET", "/v1/users/bob/rooms", response{status: 503, body: []byte(`{"error":{"code":"oops","message":"x"}}`), header: jsonHeader}},
		{"an ephemeral send's answer without ephemeral", "POST", "/v1/users/bob/messages", response{status: 202, body: []byte(`{"ephemeral":false}`), header: jsonHeader}},
		{"an ephemeral room send with a history id", "POST", "/v1/rooms/r/messages", response{status: 202, body: []byte(`{"recipients":1,"history_id":"1-0","ephemeral":true}`), header: jsonHeader}},
		{"a room history without more", "GET", "/v1/rooms/r/messages", response{status: 200, body: []byte(`{"messages":[]}`), header: jsonHeader}},
		{"a room history message with a malformed history id", "GET", "/v1/rooms/r/messages", response{status: 200, body: []byte(`{"messages":[{"type":"message","id":"1-0","room":"r","history_id":"x","data":1}],"more":false}`), header: jsonHeader}},
		{"room presence as a boolean", "GET", "/v1/rooms/r/presence", response{status: 200, body: []byte(`{"online":true}`), header: jsonHeader}},
		{"an unrouted success", "GET", "/v1/nothing", response{status: 200, body: []byte(`{}`), header: jsonHeader}},
		{"an unrouted refusal without envelope", "GET", "/v1/nothing", response{status: 404, body: []byte(`404 page not found`)}},
	} {
		if err := validateOpenAPI(c.method, base+c.path, c.res); err == nil {
			t.Errorf("%s: passed the check", c.name)
		}
	}
	for _, c := range []struct{ method, path, body string }{
		{"GET", "/v1/users/bob/presence", `{"online":true,"connections":2}`},
		{"POST", "/v1/users/bob/messages", `{"ephemeral":true}`},
		{"POST", "/v1/rooms/r/messages", `{"recipients":2,"ephemeral":true}`},
		{"POST", "/v1/rooms/r/messages", `{"recipients":2,"history_id":"1-0"}`},
	} {
		ok := response{status: 200, body: []byte(c.body), header: jsonHeader}
		if c.method == "POST" {
			ok.status = 202
		}
		if err := validateOpenAPI(c.method, base+c.path, ok); err != nil {
			t.Errorf("a right answer %s failed the check: %v", c.body, err)
		}
	}
}
