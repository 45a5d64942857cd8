package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// sessionCookie is the name of the login cookie. The browser sends it on Switchboard's /ws
// upgrade too when both are on the same site, and Switchboard passes it to the connect hook.
const sessionCookie = "session"

// The session is a signed cookie, "<user>.<expiry unix>.<hex HMAC(key, user.expiry)>", so the
// example needs no database. A real app keeps sessions in its own store (and can then end
// one before it expires); only what the connect hook does with the result matters here.

var errBadSession = errors.New("no valid session")

// signSession returns the cookie value for user, valid until exp.
func signSession(key []byte, user string, exp time.Time) string {
	payload := user + "." + strconv.FormatInt(exp.Unix(), 10)
	return payload + "." + sessionMAC(key, payload)
}

func sessionMAC(key []byte, payload string) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(payload))
	return hex.EncodeToString(mac.Sum(nil))
}

// parseSession checks a cookie value and returns its user and expiry. User ids may hold
// dots, so the value is split from the right.
func parseSession(key []byte, value string, now time.Time) (string, time.Time, error) {
	payload, mac, ok := cutLast(value, ".")
	if !ok {
		return "", time.Time{}, errBadSession
	}
	// Constant time, so that a forger learns nothing from how long a refusal takes.
	if !hmac.Equal([]byte(mac), []byte(sessionMAC(key, payload))) {
		return "", time.Time{}, fmt.Errorf("%w: bad signature", errBadSession)
	}
	user, expText, ok := cutLast(payload, ".")
	sec, err := strconv.ParseInt(expText, 10, 64)
	if !ok || err != nil || !validID(user) {
		return "", time.Time{}, fmt.Errorf("%w: malformed", errBadSession)
	}
	exp := time.Unix(sec, 0)
	if !now.Before(exp) {
		return "", time.Time{}, fmt.Errorf("%w: expired", errBadSession)
	}
	return user, exp, nil
}

func cutLast(s, sep string) (before, after string, ok bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}

// sessionFromCookieHeader finds and checks the session in a Cookie header line, as the
// connect hook receives it. Going through http.Request keeps the parsing lenient: a
// malformed cookie of some other app on the same site does not hide ours.
func (b *Backend) sessionFromCookieHeader(line string) (string, time.Time, error) {
	r := http.Request{Header: http.Header{"Cookie": {line}}}
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return "", time.Time{}, errBadSession
	}
	return parseSession(b.cfg.SessionKey, c.Value, b.cfg.Now())
}

// login signs the user in: GET /login?user=alice. The example asks for no password; a real
// app checks one (and logs in with a POST, which a cross-site page cannot trigger).
func (b *Backend) login(w http.ResponseWriter, r *http.Request) {
	user := r.URL.Query().Get("user")
	if !validID(user) {
		writeError(w, http.StatusBadRequest, "bad_user", "pass ?user= with a valid id")
		return
	}
	exp := b.cfg.Now().Add(b.cfg.SessionTTL)
	http.SetCookie(w, &http.Cookie{
		Name:  sessionCookie,
		Value: signSession(b.cfg.SessionKey, user, exp),
		// Path "/" and no Domain: the cookie goes to every port of this host, Switchboard's
		// /ws included (cookies are not scoped by port).
		Path:     "/",
		Expires:  exp,
		HttpOnly: true, // page scripts never see it
		// Lax: sent on same-site requests, the WebSocket upgrade from Switchboard's page
		// among them, never on requests started by another site.
		SameSite: http.SameSiteLaxMode,
		Secure:   b.cfg.SecureCookies,
	})
	b.log.Info("login", "user", user, "until", exp.UTC().Format(time.RFC3339))
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintf(w, "signed in as %s until %s\n", user, exp.UTC().Format(time.RFC3339))
}

// logout ends the session in this browser. Connections already open stay open until the
// session's expires_at; to end them now, a real app also calls Switchboard's
// DELETE /v1/users/{user}/connections.
func (b *Backend) logout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: b.cfg.SecureCookies,
	})
	w.WriteHeader(http.StatusNoContent)
}
