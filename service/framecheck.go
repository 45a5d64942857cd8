package service

import (
	"fmt"
	"slices"
)

// Field checks the frame decoders share (frames.go, history.go, roompresence.go).

// flag reads the boolean field i: false when absent.
func (raw *rawFrame) flag(i int) (bool, *frameError) {
	switch string(raw.fields[i]) {
	case "", "false":
		return false, nil
	case "true":
		return true, nil
	}
	return false, &frameError{code: codeBadRequest, message: fmt.Sprintf("%q must be true or false", frameFields[i])}
}

// onlyFields refuses a frame of type typ holding a field besides type, ref and allowed.
func (raw *rawFrame) onlyFields(typ string, allowed ...int) *frameError {
	for i, v := range raw.fields {
		if v != nil && i != fieldType && i != fieldRef && !slices.Contains(allowed, i) {
			return &frameError{code: codeBadRequest, message: fmt.Sprintf("unexpected field %q in a %s frame", frameFields[i], typ)}
		}
	}
	return nil
}
