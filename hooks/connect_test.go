package hooks

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestConnectOutcomes(t *testing.T) {
	t.Parallel()
	const alice = `"user":"alice","rooms":["lobby","team-42.*"],"dm":["*"]`
	tests := []struct {
		name    string
		reply   reply
		user    string // the answer's user; "" for an error
		refused int    // the RefusedError's status; 0 for none
		err     error
		outcome string
	}{
		{"a 200 with a user opens", reply{status: 200, body: "{" + alice + "}"}, "alice", 0, nil, "ok"},
		{"a body at the limit opens", reply{status: 200, body: padded(alice, tableBodySize)}, "alice", 0, nil, "ok"},
		{"a 401 refuses with 401", reply{status: 401, body: "{" + alice + "}"}, "", 401, nil, "4xx"},
		{"a 403 refuses with 403", reply{status: 403}, "", 403, nil, "4xx"},
		{"a 400 is unavailable", reply{status: 400}, "", 0, ErrUnavailable, "4xx"},
		{"a 404 is unavailable", reply{status: 404}, "", 0, ErrUnavailable, "4xx"},
		{"a 500 is unavailable", reply{status: 500, body: "{" + alice + "}"}, "", 0, ErrUnavailable, "5xx"},
		{"a redirect is not followed and is unavailable", reply{redirect: true}, "", 0, ErrUnavailable, "3xx"},
		{"bad JSON is unavailable", reply{status: 200, body: `{"user":"alice"`}, "", 0, ErrUnavailable, "bad_answer"},
		{"an empty 200 is unavailable", reply{status: 200}, "", 0, ErrUnavailable, "bad_answer"},
		{"an answer without a user is unavailable", reply{status: 200, body: `{"rooms":["lobby"]}`}, "", 0, ErrUnavailable, "bad_answer"},
		{"an invalid user id is unavailable", reply{status: 200, body: `{"user":"al ice"}`}, "", 0, ErrUnavailable, "bad_answer"},
		{"a user id too long is unavailable", reply{status: 200, body: `{"user":"` + strings.Repeat("a", 129) + `"}`}, "", 0, ErrUnavailable, "bad_answer"},
		{"a user that is not a string is unavailable", reply{status: 200, body: `{"user":42}`}, "", 0, ErrUnavailable, "bad_answer"},
		{"a bad room pattern is unavailable", reply{status: 200, body: `{"user":"alice","rooms":["te*am"]}`}, "", 0, ErrUnavailable, "bad_answer"},
		{"a bad dm pattern is unavailable", reply{status: 200, body: `{"user":"alice","dm":[""]}`}, "", 0, ErrUnavailable, "bad_answer"},
		{"expires_at in milliseconds is unavailable", reply{status: 200, body: `{"user":"alice","expires_at":1700000000000}`}, "", 0, ErrUnavailable, "bad_answer"},
		{"a negative expires_at is unavailable", reply{status: 200, body: `{"user":"alice","expires_at":-1}`}, "", 0, ErrUnavailable, "bad_answer"},
		{"a body over the limit is unavailable", reply{status: 200, body: padded(alice, tableBodySize+1)}, "", 0, ErrUnavailable, "bad_answer"},
		{"a timeout is unavailable", reply{hang: true}, "", 0, ErrUnavailable, "timeout"},
		{"an unreachable backend is unavailable", reply{unreachable: true}, "", 0, ErrUnavailable, "unreachable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			url, _ := tt.reply.serve(t)
			c, reg := newClient(t, Config{ConnectURL: url, Timeout: tableTimeout, MaxBodyBytes: tableBodySize})
			ans, err := c.Connect(t.Context(), ConnectRequest{RemoteAddr: "192.0.2.1"})
			var refused *RefusedError
			switch {
			case tt.user != "":
				if err != nil || ans.User != tt.user {
					t.Fatalf("Connect = %+v, %v; want user %s", ans, err, tt.user)
				}
			case tt.refused != 0:
				if !errors.As(err, &refused) || refused.Status != tt.refused || errors.Is(err, ErrUnavailable) {
					t.Fatalf("Connect = %+v, %v; want a refusal with %d", ans, err, tt.refused)
				}
			default:
				if !errors.Is(err, tt.err) || errors.As(err, &refused) {
					t.Fatalf("Connect = %+v, %v; want %v", ans, err, tt.err)
				}
			}
			if err != nil && ans.User != "" {
				t.Errorf("an error came with the user %q", ans.User)
			}
			checkOutcome(t, reg, HookConnect, tt.outcome)
		})
	}
}

func TestConnectAnswerCarriesPermissionsAndExpiry(t *testing.T) {
	t.Parallel()
	b := newBackend(t, answer(200, `{"user":"alice","rooms":["lobby","team-42.*"],"dm":["bob"],"expires_at":1700000000.5,"extra":true}`))
	c, _ := newClient(t, Config{ConnectURL: b.url()})
	ans, err := c.Connect(t.Context(), ConnectRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if ans.User != "alice" || !slices.Equal(ans.Rooms, []string{"lobby", "team-42.*"}) || !slices.Equal(ans.DM, []string{"bob"}) {
		t.Errorf("answer %+v", ans)
	}
	if want := time.Unix(1700000000, 500_000_000); !ans.ExpiresAt.Equal(want) {
		t.Errorf("ExpiresAt = %v, want %v", ans.ExpiresAt, want)
	}
	for id, want := range map[string]bool{"lobby": true, "team-42.x": true, "team-43.x": false, "lobby2": false} {
		if got := ans.Grants.Rooms.Match(id); got != want {
			t.Errorf("Grants.Rooms.Match(%s) = %v, want %v", id, got, want)
		}
	}
	if !ans.Grants.DM.Match("bob") || ans.Grants.DM.Match("carol") {
		t.Errorf("Grants.DM does not match what dm says")
	}
	b.checkSigned(t)
}

func TestConnectAnswerWithoutPermissionsGrantsNothing(t *testing.T) {
	t.Parallel()
	b := newBackend(t, answer(200, `{"user":"alice"}`))
	c, _ := newClient(t, Config{ConnectURL: b.url()})
	ans, err := c.Connect(t.Context(), ConnectRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if !ans.ExpiresAt.IsZero() || !ans.Grants.Rooms.Empty() || !ans.Grants.DM.Empty() {
		t.Errorf("answer %+v, want no expiry and no grants", ans)
	}
}

func TestConnectPassesOnOnlyWhatIdentifiesTheSession(t *testing.T) {
	t.Parallel()
	b := newBackend(t, answer(200, `{"user":"alice"}`))
	c, _ := newClient(t, Config{ConnectURL: b.url()})
	r := httptest.NewRequest(http.MethodGet, "/ws?since=1-0&room=lobby&room=other", nil)
	r.Header.Add("Cookie", "session=abc")
	r.Header.Add("Cookie", "theme=dark")
	r.Header.Set("Authorization", "Basic YTpi")
	r.Header.Set("User-Agent", "Mozilla/5.0")
	r.Header.Set("X-Api-Key", "never passed on")
	r.Header.Set("Origin", "https://app.example")
	if _, err := c.Connect(t.Context(), NewConnectRequest(r, "192.0.2.7")); err != nil {
		t.Fatal(err)
	}
	want := `{"headers":{"Cookie":"session=abc; theme=dark","Authorization":"Basic YTpi","User-Agent":"Mozilla/5.0"},` +
		`"query":{"room":"lobby","since":"1-0"},"remote_addr":"192.0.2.7"}`
	if got := b.lastBody(t); got != want {
		t.Errorf("the backend got\n%s\nwant\n%s", got, want)
	}
	b.checkSigned(t)
}

func TestConnectOmitsMissingHeaders(t *testing.T) {
	t.Parallel()
	b := newBackend(t, answer(200, `{"user":"alice"}`))
	c, _ := newClient(t, Config{ConnectURL: b.url()})
	r := httptest.NewRequest(http.MethodGet, "/ws", nil)
	if _, err := c.Connect(t.Context(), NewConnectRequest(r, "192.0.2.7")); err != nil {
		t.Fatal(err)
	}
	if got, want := b.lastBody(t), `{"headers":{},"query":{},"remote_addr":"192.0.2.7"}`; got != want {
		t.Errorf("the backend got %s, want %s", got, want)
	}
}

func TestConnectWithoutURLIsNotEnabled(t *testing.T) {
	t.Parallel()
	c, _ := newClient(t, Config{})
	if _, err := c.Connect(t.Context(), ConnectRequest{}); !errors.Is(err, ErrNotEnabled) {
		t.Fatalf("Connect: %v, want ErrNotEnabled", err)
	}
}
