package tokens

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/go-json-experiment/json/jsontext"
)

// registeredTokenNames are the names of the JOSE header (RFC 7515 §4.1) and the registered
// claims (RFC 7519 §4.1). A name that differs from one of them only in case is refused: Go's
// encoding/json matches names case-insensitively, so somewhere "SUB" could stand in for sub.
var registeredTokenNames = [...]string{
	"alg", "jku", "jwk", "kid", "x5u", "x5c", "x5t", "x5t#S256", "typ", "cty", "crit",
	"iss", "sub", "aud", "exp", "nbf", "iat", "jti",
}

// checkTokenJSON refuses a token whose header or claims are not one JSON object with
// unique names, in UTF-8, none of them a case variant of a registered name: with duplicate
// names, which one counts depends on the parser (encoding/json takes the last).
func checkTokenJSON(raw string) error {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return refuse("invalid token")
	}
	for i, part := range parts[:2] {
		what := [...]string{"header", "claim"}[i]
		b, err := base64.RawURLEncoding.DecodeString(part)
		if err != nil {
			return refuse("invalid token")
		}
		// jsontext refuses duplicate names and invalid UTF-8 by default.
		dec := jsontext.NewDecoder(bytes.NewReader(b))
		if tok, err := dec.ReadToken(); err != nil || tok.Kind() != '{' {
			return refuse("invalid token: the " + what + "s are not a JSON object")
		}
		for dec.PeekKind() == '"' {
			tok, err := dec.ReadToken()
			if err != nil {
				return tokenJSONError(what, err)
			}
			name := tok.String()
			for _, reg := range registeredTokenNames {
				if name != reg && strings.EqualFold(name, reg) {
					return refuse(fmt.Sprintf("invalid token: %s %q differs from %q only in case", what, name, reg))
				}
			}
			if err := dec.SkipValue(); err != nil {
				return tokenJSONError(what, err)
			}
		}
		if _, err := dec.ReadToken(); err != nil {
			return tokenJSONError(what, err)
		}
		if _, err := dec.ReadToken(); err != io.EOF {
			return refuse("invalid token: the " + what + "s have data after their JSON object")
		}
	}
	return nil
}

func tokenJSONError(what string, err error) error {
	if errors.Is(err, jsontext.ErrDuplicateName) {
		return refuse("invalid token: a " + what + " name appears twice")
	}
	return refuse("invalid token: the " + what + "s are not valid JSON")
}
