package tokens

import (
	"fmt"
	"strings"
	"time"

	"github.com/switchboard-dev/switchboard/subscriptions"
)

// Claims is what a verified token says about its user.
type Claims struct {
	// Subject is the user id (sub), always a valid id.
	Subject string
	// Expires is the token's exp.
	Expires time.Time
	// IssuedAt is the token's iat; zero when the token has none.
	IssuedAt time.Time
	// Grants are the permissions of the rooms and dm claims.
	Grants Grants
}

// Grants are what a user may do beyond what membership allows: join the rooms that Rooms
// matches, and send direct messages to the users that DM matches.
type Grants struct {
	Rooms Patterns
	DM    Patterns
}

// Patterns is a parsed list of id patterns: an exact id, a prefix ending in "*"
// ("team-42.*"), or "*" for any id. The zero value matches nothing.
type Patterns struct {
	all      bool
	exact    map[string]struct{}
	prefixes []string
}

// ParsePatterns parses a claim's patterns. Each must be "*", a valid id, or a non-empty
// prefix of valid id characters followed by one "*"; anything else is an error naming it,
// so that a typo in a grant refuses the token rather than granting something else.
func ParsePatterns(list []string) (Patterns, error) {
	var p Patterns
	for _, s := range list {
		switch {
		case s == "*":
			p.all = true
		case strings.HasSuffix(s, "*"):
			prefix := s[:len(s)-1]
			if !subscriptions.ValidID(prefix) {
				return Patterns{}, fmt.Errorf("pattern %q: a prefix pattern is id characters followed by one *", s)
			}
			p.prefixes = append(p.prefixes, prefix)
		case subscriptions.ValidID(s):
			if p.exact == nil {
				p.exact = make(map[string]struct{}, len(list))
			}
			p.exact[s] = struct{}{}
		default:
			return Patterns{}, fmt.Errorf("pattern %q is neither an id, a prefix ending in *, nor *", s)
		}
	}
	return p, nil
}

// Match reports whether id matches one of the patterns. It allocates nothing.
func (p Patterns) Match(id string) bool {
	if p.all {
		return true
	}
	if _, ok := p.exact[id]; ok {
		return true
	}
	for _, prefix := range p.prefixes {
		if strings.HasPrefix(id, prefix) {
			return true
		}
	}
	return false
}

// Empty reports whether the patterns match nothing.
func (p Patterns) Empty() bool { return !p.all && len(p.exact) == 0 && len(p.prefixes) == 0 }
