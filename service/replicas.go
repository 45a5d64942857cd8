package service

import (
	"errors"

	"github.com/switchboard-dev/switchboard/subscriptions"
)

// sendAnswer is the body of an accepted direct message: its id, and "replicated":false when
// err says the master has it but fewer replicas than --wait-replicas confirmed it in time,
// so that a backend knows the message is delivered yet could be lost to a failover. Written
// by hand: this is the API's hot path, and ids need no escaping.
func sendAnswer(id subscriptions.StreamID, err error) []byte {
	b := make([]byte, 0, 72)
	b = append(b, `{"id":"`...)
	b = append(b, id.String()...)
	if errors.Is(err, subscriptions.ErrNotReplicated) {
		b = append(b, `","replicated":false}`...)
		return append(b, '\n')
	}
	return append(b, "\"}\n"...)
}

// replicated is an answer's "replicated": false (a pointer to it) when err says the
// replicas did not confirm the send in time, nil (the field left out) otherwise.
func replicated(err error) *bool {
	if errors.Is(err, subscriptions.ErrNotReplicated) {
		return new(bool)
	}
	return nil
}
