package subscriptions

import (
	"encoding/base64"
	"encoding/json"
	"unicode/utf8"
	"unsafe"
)

// Message is one message on its way to a connection: its id and its whole JSON envelope,
// encoded once and shared by every connection it goes to. Payload must not be modified.
type Message struct {
	ID      StreamID
	Payload []byte
	// Dedupe is a digest of the envelope's "dedupe" token (0 for none): a send and its
	// retries under one Idempotency-Key share it, so that a connection that got one of them
	// is not handed another (dedupe.go).
	Dedupe uint64
}

// Envelope is a message to deliver. Data must be valid JSON (the service validates it where
// it decodes it); Binary, when not nil, is delivered as "data_b64" instead of "data".
type Envelope struct {
	From string
	// To names the recipient on the sender's own copy of a direct message (PublishDM);
	// empty on what the recipient gets.
	To     string
	Room   string
	Data   json.RawMessage
	Binary []byte
	// Dedupe, when set, is the send's dedupe token (dedupeToken): the same for a send and
	// its retries, delivered as "dedupe", and never two messages of a connection with one.
	Dedupe string
}

// validIDs reports whether the ids the envelope names match the id pattern.
func (e Envelope) validIDs() bool {
	for _, id := range [...]string{e.From, e.To, e.Room} {
		if id != "" && !ValidID(id) {
			return false
		}
	}
	return e.Dedupe == "" || validDedupe(e.Dedupe)
}

// envelopePrefix starts every message envelope; the delivery script completes it with the
// stream id, so the envelope is encoded once, in Go, and never parsed again on its way out.
const envelopePrefix = `{"type":"message","id":"`

// tail encodes everything of the envelope after its id: `,"from":...,"data":...}`. The stream
// keeps the tail, and the id completes it, both when published and when replayed.
func (e Envelope) tail() string {
	n := len(e.Data) + len(e.From) + len(e.To) + len(e.Room) + 40
	if e.Binary != nil {
		n += base64.StdEncoding.EncodedLen(len(e.Binary))
	}
	b := make([]byte, 0, n+len(e.Dedupe)+12)
	if e.Dedupe != "" {
		// First, where decodeMessage finds it without parsing the rest. A token is base64url.
		b = append(b, dedupeField...)
		b = append(b, e.Dedupe...)
		b = append(b, '"')
	}
	if e.From != "" {
		// Ids are restricted to characters that need no JSON escaping.
		b = append(b, `,"from":"`...)
		b = append(b, e.From...)
		b = append(b, '"')
	}
	if e.To != "" {
		b = append(b, `,"to":"`...)
		b = append(b, e.To...)
		b = append(b, '"')
	}
	if e.Room != "" {
		b = append(b, `,"room":"`...)
		b = append(b, e.Room...)
		b = append(b, '"')
	}
	if e.Binary != nil {
		b = append(b, `,"data_b64":"`...)
		b = base64.StdEncoding.AppendEncode(b, e.Binary)
		b = append(b, '"')
	} else {
		b = append(b, `,"data":`...)
		if len(e.Data) == 0 {
			b = append(b, "null"...)
		} else {
			b = append(b, e.Data...)
		}
	}
	b = append(b, '}')
	// The bytes become the string, as strings.Builder does: built once, never copied, and
	// never written again.
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// assemble builds the full envelope of a message from its id and tail, as the script does.
func assemble(id string, tail string) []byte {
	b := make([]byte, 0, len(envelopePrefix)+len(id)+1+len(tail))
	b = append(b, envelopePrefix...)
	b = append(b, id...)
	b = append(b, '"')
	return append(b, tail...)
}

// decodeMessage reads the id of a published envelope. It returns false for anything that is
// not a message envelope (control messages, or garbage someone published on the channel,
// invalid UTF-8 included): checked here once per message, not once per connection.
func decodeMessage(payload string) (Message, bool) {
	if len(payload) < len(envelopePrefix)+4 || payload[:len(envelopePrefix)] != envelopePrefix {
		return Message{}, false
	}
	rest := payload[len(envelopePrefix):]
	end := -1
	for i := 0; i < len(rest) && i < 42; i++ {
		if rest[i] == '"' {
			end = i
			break
		}
	}
	if end < 0 {
		return Message{}, false
	}
	id, err := ParseStreamID(rest[:end])
	if err != nil {
		return Message{}, false
	}
	if !utf8.ValidString(payload) {
		// Only something other than a node can have published it (nodes refuse such input),
		// and as a text frame it would make a browser fail the connection on every resume.
		return Message{}, false
	}
	// The payload's bytes are shared, not copied: a Message's Payload is never modified,
	// and this runs once per message on the Pub/Sub reader, the node's hottest loop.
	return Message{ID: id, Payload: unsafe.Slice(unsafe.StringData(payload), len(payload)),
		Dedupe: dedupeOf(rest[end+1:])}, true
}
