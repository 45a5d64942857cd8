package wsclient

import "unsafe"

// decodeFast decodes raw into f as json.Unmarshal would, for frames that hold only the
// fields a message frame carries (type, id, from, to, room, history_id, big, ephemeral,
// data, data_b64), written plainly: exact key names, strings of printable ASCII without
// escapes, true/false for the flags. It reports false for anything else, valid or not, and
// the caller then decodes with json.Unmarshal; so it never decides a frame is invalid.
//
// The strings it sets and f.Data share raw's memory, so raw must not change afterwards.
// f must be the zero Frame; on false it may hold some fields.
func decodeFast(raw []byte, f *Frame) bool {
	i := skipSpace(raw, 0)
	if i >= len(raw) || raw[i] != '{' {
		return false
	}
	i = skipSpace(raw, i+1)
	if i < len(raw) && raw[i] == '}' {
		return false // {}: nothing to gain
	}
	for {
		key, j, ok := plainString(raw, i)
		if !ok {
			return false
		}
		i = skipSpace(raw, j)
		if i >= len(raw) || raw[i] != ':' {
			return false
		}
		i = skipSpace(raw, i+1)
		var s *string
		switch key {
		case "type":
			s = &f.Type
		case "id":
			s = &f.ID
		case "from":
			s = &f.From
		case "to":
			s = &f.To
		case "room":
			s = &f.Room
		case "history_id":
			s = &f.HistoryID
		case "data_b64":
			s = &f.DataB64
		case "big", "ephemeral":
			v, j, ok := boolLiteral(raw, i)
			if !ok {
				return false
			}
			if key == "big" {
				f.Big = v
			} else {
				f.Ephemeral = v
			}
			i = j
		case "data":
			j, ok := skipValue(raw, i, 0)
			if !ok {
				return false
			}
			// As json.RawMessage does, but sharing raw; the capacity stops an append from
			// writing over what follows.
			f.Data = raw[i:j:j]
			i = j
		default:
			return false
		}
		if s != nil {
			v, j, ok := plainString(raw, i)
			if !ok {
				return false
			}
			*s, i = v, j
		}
		i = skipSpace(raw, i)
		if i >= len(raw) {
			return false
		}
		if raw[i] == '}' {
			break
		}
		if raw[i] != ',' {
			return false
		}
		i = skipSpace(raw, i+1)
	}
	return skipSpace(raw, i+1) == len(raw)
}

// plainString reads the string at b[i] when it is printable ASCII without escapes, and
// returns it sharing b's memory, with the index after its closing quote.
func plainString(b []byte, i int) (string, int, bool) {
	if i >= len(b) || b[i] != '"' {
		return "", i, false
	}
	start := i + 1
	for j := start; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			if j == start {
				return "", j + 1, true
			}
			return unsafe.String(&b[start], j-start), j + 1, true
		case c < 0x20, c == '\\', c >= 0x80:
			// Escapes and non-ASCII need decoding (invalid UTF-8 becomes U+FFFD); control
			// characters are invalid JSON. json.Unmarshal handles all three.
			return "", j, false
		}
	}
	return "", len(b), false
}

// boolLiteral reads true or false at b[i].
func boolLiteral(b []byte, i int) (v bool, next int, ok bool) {
	if hasLiteral(b, i, "true") {
		return true, i + 4, true
	}
	if hasLiteral(b, i, "false") {
		return false, i + 5, true
	}
	return false, i, false
}

func hasLiteral(b []byte, i int, lit string) bool {
	return len(b)-i >= len(lit) && string(b[i:i+len(lit)]) == lit
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// maxFastDepth bounds skipValue's recursion; deeper data goes to json.Unmarshal, which has
// its own limit.
const maxFastDepth = 64

// skipValue checks that a JSON value starts at b[i] (no leading space) and returns the
// index after it.
func skipValue(b []byte, i, depth int) (int, bool) {
	if i >= len(b) {
		return i, false
	}
	switch c := b[i]; {
	case c == '"':
		return skipString(b, i)
	case c == '{':
		if depth >= maxFastDepth {
			return i, false
		}
		i = skipSpace(b, i+1)
		if i < len(b) && b[i] == '}' {
			return i + 1, true
		}
		for {
			j, ok := skipString(b, i)
			if !ok {
				return j, false
			}
			i = skipSpace(b, j)
			if i >= len(b) || b[i] != ':' {
				return i, false
			}
			if i, ok = skipValue(b, skipSpace(b, i+1), depth+1); !ok {
				return i, false
			}
			i = skipSpace(b, i)
			if i >= len(b) {
				return i, false
			}
			if b[i] == '}' {
				return i + 1, true
			}
			if b[i] != ',' {
				return i, false
			}
			i = skipSpace(b, i+1)
		}
	case c == '[':
		if depth >= maxFastDepth {
			return i, false
		}
		i = skipSpace(b, i+1)
		if i < len(b) && b[i] == ']' {
			return i + 1, true
		}
		for {
			var ok bool
			if i, ok = skipValue(b, i, depth+1); !ok {
				return i, false
			}
			i = skipSpace(b, i)
			if i >= len(b) {
				return i, false
			}
			if b[i] == ']' {
				return i + 1, true
			}
			if b[i] != ',' {
				return i, false
			}
			i = skipSpace(b, i+1)
		}
	case c == '-' || (c >= '0' && c <= '9'):
		return skipNumber(b, i)
	case c == 't':
		return i + 4, hasLiteral(b, i, "true")
	case c == 'f':
		return i + 5, hasLiteral(b, i, "false")
	case c == 'n':
		return i + 4, hasLiteral(b, i, "null")
	}
	return i, false
}

// skipString checks the JSON string at b[i] and returns the index after it. Like
// encoding/json, it accepts any byte from 0x20 up, invalid UTF-8 included.
func skipString(b []byte, i int) (int, bool) {
	if i >= len(b) || b[i] != '"' {
		return i, false
	}
	for i++; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			return i + 1, true
		case c < 0x20:
			return i, false
		case c == '\\':
			i++
			if i >= len(b) {
				return i, false
			}
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if len(b)-i < 5 {
					return i, false
				}
				for _, h := range b[i+1 : i+5] {
					if !isHex(h) {
						return i, false
					}
				}
				i += 4
			default:
				return i, false
			}
		}
	}
	return i, false
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

// skipNumber checks the JSON number at b[i]: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func skipNumber(b []byte, i int) (int, bool) {
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		i = skipDigits(b, i+1)
	default:
		return i, false
	}
	if i < len(b) && b[i] == '.' {
		j := skipDigits(b, i+1)
		if j == i+1 {
			return j, false
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := skipDigits(b, i)
		if j == i {
			return j, false
		}
		i = j
	}
	return i, true
}

func skipDigits(b []byte, i int) int {
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	return i
}
