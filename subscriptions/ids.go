package subscriptions

import (
	"errors"
	"strconv"
	"strings"
)

// MaxIDLength is the longest user id or room name accepted.
const MaxIDLength = 128

// ValidID reports whether s is a valid user id or room name: 1 to 128 characters from
// [A-Za-z0-9._@+-]. The set excludes ':', '{' and '}', so an id can never forge another
// key or move a key to another cluster slot.
func ValidID(s string) bool {
	if len(s) == 0 || len(s) > MaxIDLength {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '.', c == '_', c == '@', c == '+', c == '-':
		default:
			return false
		}
	}
	return true
}

// StreamID is a Redis stream entry id, <ms>-<seq>. Message ids are stream ids of the
// recipient's stream, so they order a user's messages.
type StreamID struct {
	MS, Seq uint64
}

// ErrBadStreamID is returned for a message id that is not of the form <ms>-<seq>.
var ErrBadStreamID = errors.New("malformed message id")

// ParseStreamID parses "<ms>-<seq>". A bare "<ms>" is accepted as "<ms>-0", as Redis does.
func ParseStreamID(s string) (StreamID, error) {
	if s == "" || len(s) > 41 {
		return StreamID{}, ErrBadStreamID
	}
	msPart, seqPart, hasSeq := strings.Cut(s, "-")
	ms, err := parseDigits(msPart)
	if err != nil {
		return StreamID{}, ErrBadStreamID
	}
	var seq uint64
	if hasSeq {
		if seq, err = parseDigits(seqPart); err != nil {
			return StreamID{}, ErrBadStreamID
		}
	}
	return StreamID{MS: ms, Seq: seq}, nil
}

// parseDigits is strconv.ParseUint restricted to plain decimal digits (no sign, no "0x").
func parseDigits(s string) (uint64, error) {
	if s == "" {
		return 0, ErrBadStreamID
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, ErrBadStreamID
		}
	}
	return strconv.ParseUint(s, 10, 64)
}

// String formats the id as Redis does.
func (id StreamID) String() string {
	b := make([]byte, 0, 32)
	b = strconv.AppendUint(b, id.MS, 10)
	b = append(b, '-')
	b = strconv.AppendUint(b, id.Seq, 10)
	return string(b)
}

// IsZero reports whether id is 0-0, the position before every message.
func (id StreamID) IsZero() bool { return id.MS == 0 && id.Seq == 0 }

// Less reports whether id orders before other.
func (id StreamID) Less(other StreamID) bool {
	return id.MS < other.MS || (id.MS == other.MS && id.Seq < other.Seq)
}
