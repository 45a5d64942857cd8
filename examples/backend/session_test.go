package main

import (
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// login signs user in through GET /login and returns the session cookie it set.
func (f *fixture) login(user string) *http.Cookie {
	f.t.Helper()
	w := f.do(httptest.NewRequest(http.MethodGet, "/login?user="+user, nil))
	wantStatus(f.t, w, http.StatusOK)
	for _, c := range w.Result().Cookies() {
		if c.Name == sessionCookie {
			return c
		}
	}
	f.t.Fatalf("GET /login set no %s cookie", sessionCookie)
	return nil
}

// connectWith calls the connect hook with cookieHeader as the request's Cookie header.
func (f *fixture) connectWith(cookieHeader string) *httptest.ResponseRecorder {
	f.t.Helper()
	return f.post("/hooks/connect", map[string]any{
		"headers":     map[string]string{"Cookie": cookieHeader, "User-Agent": "test"},
		"query":       map[string]string{},
		"remote_addr": "192.0.2.7",
	})
}

func TestLoginSetsASignedHttpOnlyLaxCookie(t *testing.T) {
	f := newFixture(t)
	c := f.login("alice")
	exp := f.now.Add(time.Hour)
	if !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.Domain != "" {
		t.Errorf("cookie attributes: HttpOnly %v SameSite %v Path %q Domain %q; want HttpOnly, Lax, /, host-only",
			c.HttpOnly, c.SameSite, c.Path, c.Domain)
	}
	if !c.Expires.Equal(exp) {
		t.Errorf("cookie expires %v, want %v", c.Expires, exp)
	}
	prefix := "alice." + strconv.FormatInt(exp.Unix(), 10) + "."
	if mac, ok := strings.CutPrefix(c.Value, prefix); !ok || len(mac) != 64 {
		t.Errorf("cookie value %q, want %s<64 hex digits>", c.Value, prefix)
	}
}

func TestLoginRefusesABadUser(t *testing.T) {
	f := newFixture(t)
	for _, q := range []string{"", "?user=", "?user=a%20b", "?user=" + strings.Repeat("x", 129)} {
		w := f.do(httptest.NewRequest(http.MethodGet, "/login"+q, nil))
		wantStatus(t, w, http.StatusBadRequest)
		if len(w.Result().Cookies()) != 0 {
			t.Errorf("GET /login%s set a cookie", q)
		}
	}
}

func TestLogoutClearsTheCookie(t *testing.T) {
	f := newFixture(t)
	w := f.do(httptest.NewRequest(http.MethodPost, "/logout", nil))
	wantStatus(t, w, http.StatusNoContent)
	cs := w.Result().Cookies()
	if len(cs) != 1 || cs[0].Name != sessionCookie || cs[0].MaxAge >= 0 || cs[0].Value != "" {
		t.Fatalf("logout cookies %+v, want %s deleted", cs, sessionCookie)
	}
}

func TestConnectAnswersTheSessionsUser(t *testing.T) {
	f := newFixture(t)
	c := f.login("alice")
	// Other cookies of the site come along, one of them malformed.
	body := wantStatus(t, f.connectWith(`theme=dark; bad"cookie; session=`+c.Value+"; lang=en"), http.StatusOK)
	want := map[string]any{
		"user":       "alice",
		"rooms":      []any{"public.*"},
		"dm":         []any{"support"},
		"expires_at": float64(f.now.Add(time.Hour).Unix()),
	}
	if !reflect.DeepEqual(body, want) {
		t.Fatalf("connect answer %v, want %v", body, want)
	}
}

func TestConnectReadsTheCookieHeaderWhateverItsCase(t *testing.T) {
	f := newFixture(t)
	c := f.login("bob")
	w := f.post("/hooks/connect", map[string]any{"headers": map[string]string{"cookie": "session=" + c.Value}})
	if body := wantStatus(t, w, http.StatusOK); body["user"] != "bob" {
		t.Fatalf("user %v, want bob", body["user"])
	}
}

func TestConnectRefusesWithoutAValidSession(t *testing.T) {
	f := newFixture(t)
	good := f.login("alice").Value
	user, rest, _ := strings.Cut(good, ".")
	expText, mac, _ := strings.Cut(rest, ".")
	exp, _ := strconv.ParseInt(expText, 10, 64)
	flip := func(s string) string { // change the last hex digit
		last := "0"
		if strings.HasSuffix(s, "0") {
			last = "1"
		}
		return s[:len(s)-1] + last
	}
	cases := []struct{ name, header string }{
		{"no Cookie header", ""},
		{"other cookies only", "theme=dark; lang=en"},
		{"the session under another name", "sessions=" + good},
		{"an empty session", "session="},
		{"the user changed", "session=bob." + expText + "." + mac},
		{"the expiry pushed later", "session=" + user + "." + strconv.FormatInt(exp+3600, 10) + "." + mac},
		{"one digit of the signature changed", "session=" + flip(good)},
		{"the signature cut short", "session=" + good[:len(good)-2]},
		{"no signature", "session=" + user + "." + expText},
		{"just a user name", "session=alice"},
		{"signed with another key", "session=" + signSession([]byte("another key"), "alice", f.now.Add(time.Hour))},
		{"signed with the webhook secret itself", "session=" + signSession([]byte(testSecret), "alice", f.now.Add(time.Hour))},
		{"a correctly signed invalid user id", "session=" + signSession(f.b.cfg.SessionKey, "al/ice", f.now.Add(time.Hour))},
		{"a correctly signed non-numeric expiry", "session=alice.soon." + sessionMAC(f.b.cfg.SessionKey, "alice.soon")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			body := wantStatus(t, f.connectWith(c.header), http.StatusUnauthorized)
			if body["user"] != nil {
				t.Fatalf("a refusal names a user: %v", body)
			}
		})
	}
}

func TestConnectRefusesAnExpiredSession(t *testing.T) {
	f := newFixture(t)
	c := f.login("alice")
	f.now = f.now.Add(time.Hour - time.Second)
	wantStatus(t, f.connectWith("session="+c.Value), http.StatusOK)
	f.now = f.now.Add(time.Second)
	wantStatus(t, f.connectWith("session="+c.Value), http.StatusUnauthorized)
}

func TestConnectRefusesABodyThatIsNotARequest(t *testing.T) {
	f := newFixture(t)
	wantStatus(t, f.post("/hooks/connect", `{"headers":`), http.StatusBadRequest)
	wantStatus(t, f.post("/hooks/connect", `{"headers":["Cookie"]}`), http.StatusBadRequest)
}
