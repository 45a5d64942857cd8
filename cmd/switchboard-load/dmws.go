package main

import (
	"strconv"
	"strings"
	"time"

	"github.com/switchboard-dev/switchboard/internal/wsclient"
)

// The dm scenario with --via ws: clients send the direct messages over their own sockets,
// as a chat app's users do, instead of a backend posting them. Message seq goes to user
// seq mod U and is sent by the next user, so that every user both sends and receives, at
// the run's rate divided by U (well under a node's frame and send limits for a realistic
// U). A publisher is one send waiting for its ack at a time; its frame's ref names the
// publisher, so that the sender's session hands the ack back to it.

// publishWS sends message seq from the next user's connection and waits for its ack.
func (r *dmRun) publishWS(pub int, seq int64) {
	n := int64(len(r.users))
	u, from := r.users[seq%n], r.users[(seq+1)%n]
	now := time.Now()
	conn := from.sess.live.Load()
	if conn == nil {
		r.send.refused("sender reconnecting", time.Since(now))
		return
	}
	frame := make([]byte, 0, r.cfg.payloadBytes+len(u.id)+96)
	frame = append(frame, `{"type":"send","to":"`...)
	frame = append(frame, u.id...)
	frame = append(frame, `","ref":"`...)
	ref := len(frame)
	frame = strconv.AppendInt(frame, int64(pub), 10)
	frame = append(frame, '.')
	frame = strconv.AppendInt(frame, seq, 10)
	refText := string(frame[ref:])
	frame = append(frame, `","data":`...)
	frame = appendPayload(frame, now.UnixNano(), seq, r.cfg.payloadBytes)
	frame = append(frame, '}')
	if err := conn.SendRaw(frame); err != nil {
		r.send.refused(errorClass(err), time.Since(now))
		return
	}
	f, ok := r.awaitReply(pub, refText)
	took := time.Since(now)
	switch {
	case !ok:
		r.send.refused("timeout", took)
	case f.Type == "error":
		r.send.refused(f.Code, took)
	default:
		r.send.record(202, nil, took)
		r.accepted(u, f.ID, "ack without an id")
	}
}

// awaitReply waits up to --http-timeout for publisher pub's answer with ref; answers to
// its earlier sends, which timed out, are skipped.
func (r *dmRun) awaitReply(pub int, ref string) (wsclient.Frame, bool) {
	t := time.NewTimer(r.cfg.httpTimeout)
	defer t.Stop()
	for {
		select {
		case f := <-r.replies[pub]:
			if f.Ref == ref {
				return f, true
			}
		case <-t.C:
			return wsclient.Frame{}, false
		}
	}
}

// onReply hands an ack or error to the publisher its ref names; it runs on the sending
// user's session handler (see session.run) and never blocks it.
func (r *dmRun) onReply(f wsclient.Frame) {
	p, _, ok := strings.Cut(f.Ref, ".")
	pub, err := strconv.Atoi(p)
	if !ok || err != nil || pub < 0 || pub >= len(r.replies) {
		r.sess.frames.add(f.Type + " with an unknown ref")
		return
	}
	for {
		select {
		case r.replies[pub] <- f:
			return
		default:
		}
		// A stale answer (its send timed out) fills the slot: drop it for this one.
		select {
		case <-r.replies[pub]:
		default:
		}
	}
}

// refused counts a send that was not accepted, by why.
func (s *sendStats) refused(why string, took time.Duration) {
	s.requests.Add(1)
	s.latency.Record(int64(took))
	s.errors.add(why)
}
