package hooks

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/switchboard-dev/switchboard/subscriptions"
	"github.com/switchboard-dev/switchboard/tokens"
)

// ConnectRequest is the connect hook's body: what a /ws request without a token shows of
// itself.
type ConnectRequest struct {
	Headers ConnectHeaders `json:"headers"`
	// Query is the request's query, the first value of each parameter.
	Query map[string]string `json:"query"`
	// RemoteAddr is the client's address as the node sees it (after trusted proxies).
	RemoteAddr string `json:"remote_addr"`
}

// ConnectHeaders are the only headers passed on to the connect hook: what identifies a
// session, and nothing else of the request.
type ConnectHeaders struct {
	Cookie        string `json:"Cookie,omitempty"`
	Authorization string `json:"Authorization,omitempty"`
	UserAgent     string `json:"User-Agent,omitempty"`
}

// NewConnectRequest builds the connect hook's question from a /ws request and the
// client's address (the service's idea of it, proxies considered). Several Cookie headers
// are joined with "; " as one.
func NewConnectRequest(r *http.Request, remoteAddr string) ConnectRequest {
	q := r.URL.Query()
	query := make(map[string]string, len(q))
	for k, v := range q {
		query[k] = v[0]
	}
	return ConnectRequest{
		Headers: ConnectHeaders{
			Cookie:        strings.Join(r.Header.Values("Cookie"), "; "),
			Authorization: r.Header.Get("Authorization"),
			UserAgent:     r.Header.Get("User-Agent"),
		},
		Query:      query,
		RemoteAddr: remoteAddr,
	}
}

// ConnectAnswer is the connect hook's decision: the connection is User's, with the
// permissions of Rooms and DM (patterns, as a token's claims), until ExpiresAt (zero: no
// end).
type ConnectAnswer struct {
	User  string
	Rooms []string
	DM    []string
	// Grants are Rooms and DM parsed; Connect refuses an answer whose patterns do not parse.
	Grants    tokens.Grants
	ExpiresAt time.Time
}

type connectAnswer struct {
	User      string   `json:"user"`
	Rooms     []string `json:"rooms"`
	DM        []string `json:"dm"`
	ExpiresAt *float64 `json:"expires_at"`
}

// RefusedError is the connect hook's refusal (401 or 403): the upgrade is refused with
// Status.
type RefusedError struct {
	Status int
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("connect hook refused the connection (%d %s)", e.Status, http.StatusText(e.Status))
}

// Connect asks the connect hook who a /ws request without a token is. A refusal (401 or
// 403) is a *RefusedError; no usable answer (another status, a timeout, an answer without a
// valid user id or with bad patterns) wraps ErrUnavailable (503); ErrNotEnabled without a
// ConnectURL.
func (c *Client) Connect(ctx context.Context, req ConnectRequest) (ConnectAnswer, error) {
	e := c.hooks[1]
	if e.url == "" {
		return ConnectAnswer{}, ErrNotEnabled
	}
	payload, err := json.Marshal(req)
	if err != nil {
		return ConnectAnswer{}, fmt.Errorf("connect hook: encoding the request: %w", err)
	}
	var ans ConnectAnswer
	err = c.call(ctx, e, payload, func(status int, body []byte) (outcome, error) {
		switch {
		case status == http.StatusUnauthorized || status == http.StatusForbidden:
			return outcome4xx, &RefusedError{Status: status}
		case status < 200 || status > 299:
			return unexpectedStatus(e, status)
		}
		var a connectAnswer
		if err := json.Unmarshal(body, &a); err != nil {
			return badAnswer(e, "%v", err)
		}
		if !subscriptions.ValidID(a.User) {
			return badAnswer(e, "user %q is not a valid id", a.User)
		}
		rooms, err := tokens.ParsePatterns(a.Rooms)
		if err != nil {
			return badAnswer(e, "rooms: %v", err)
		}
		dm, err := tokens.ParsePatterns(a.DM)
		if err != nil {
			return badAnswer(e, "dm: %v", err)
		}
		ans = ConnectAnswer{User: a.User, Rooms: a.Rooms, DM: a.DM, Grants: tokens.Grants{Rooms: rooms, DM: dm}}
		if a.ExpiresAt != nil {
			sec := *a.ExpiresAt
			if sec < 0 || sec > math.MaxInt32*4 { // past 2242, or milliseconds: not unix seconds
				return badAnswer(e, "expires_at %v is not unix seconds", sec)
			}
			if sec > 0 {
				ans.ExpiresAt = time.Unix(0, int64(sec*float64(time.Second)))
			}
		}
		return outcomeOK, nil
	})
	if err != nil {
		return ConnectAnswer{}, err
	}
	return ans, nil
}
