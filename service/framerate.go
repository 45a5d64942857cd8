package service

import (
	"context"
	"errors"
	"time"
)

// A connection's frame rate limit (Config.FrameRate, FrameBurst), and the per-user limits
// of client commands (Limiter), which add to the same count of refused frames.

// refusalWindow is how long a connection's refused frames weigh: it may have FrameBurst
// frames refused per refusalWindow (the count decays evenly), and one more closes it with
// 1008. A client briefly over the limit gets rate_limited error frames; one that keeps
// sending faster than FrameRate — by as little as FrameBurst per refusalWindow — is closed.
const refusalWindow = 10 * time.Second

// verdictRing bounds the messages the guard may have passed ahead of OnMessage: they all
// fit in gws's read buffer (a read past the buffer holds one payload, no header), and the
// smallest client frame is 6 bytes.
const verdictRing = 256

var (
	errRateLimited = violation(disconnectRateLimited)
	errFramesAhead = &frameViolation{code: closePolicy, reason: "too many frames ahead", label: "rate_limited"}
)

// violation returns d as the frame guard's violation.
func violation(d disconnect) *frameViolation {
	v := frameViolation(d)
	return &v
}

// frameSeen implements frameOwner: every frame, control and continuation frames
// included, takes a token from the connection's bucket. A message with a refused frame is
// refused whole with an error frame (see OnMessage); too many refusals close the
// connection.
func (c *client) frameSeen(opcode byte, fin bool) *frameViolation {
	ok := c.allowFrame()
	if !ok && c.debt > float64(c.s.cfg.FrameBurst) {
		return errRateLimited
	}
	if opcode&0x08 != 0 {
		return nil // a control frame: counted, nothing to refuse
	}
	c.partial = c.partial || !ok
	if !fin {
		return nil
	}
	if c.seen-c.served >= verdictRing {
		return errFramesAhead
	}
	word, bit := c.seen/64%uint32(len(c.verdicts)), uint64(1)<<(c.seen%64)
	if c.partial {
		c.verdicts[word] |= bit
	} else {
		c.verdicts[word] &^= bit
	}
	c.seen++
	c.partial = false
	return nil
}

// refusedNext reports whether the message OnMessage is handling was refused by the rate
// limit when its frames arrived.
func (c *client) refusedNext() bool {
	if c.served == c.seen {
		return false // not through the guard: a test's client
	}
	word, bit := c.served/64%uint32(len(c.verdicts)), uint64(1)<<(c.served%64)
	c.served++
	return c.verdicts[word]&bit != 0
}

// allowFrame takes a token from the connection's bucket; a refusal adds to its debt.
func (c *client) allowFrame() bool {
	now := time.Now()
	if !c.refill.IsZero() {
		dt := now.Sub(c.refill).Seconds()
		burst := float64(c.s.cfg.FrameBurst)
		c.tokens = min(burst, c.tokens+dt*c.s.cfg.FrameRate)
		c.debt = max(0, c.debt-dt*burst/refusalWindow.Seconds())
	}
	c.refill = now
	if c.tokens < 1 {
		c.debt++
		return false
	}
	c.tokens--
	return true
}

// limitedFrame is an error frame with the time after which the refused action may succeed.
type limitedFrame struct {
	Type         string `json:"type"`
	Ref          string `json:"ref,omitempty"`
	Code         string `json:"code"`
	Message      string `json:"message"`
	RetryAfterMS int64  `json:"retry_after_ms"`
}

// allowCommandOfUser checks a client command against its user's limit, across all the
// user's connections and nodes. It reports whether the command may be carried out; if
// not, it has answered it (rate_limited with retry_after_ms, or unavailable when Redis did
// not answer). A refusal adds to the same decaying count of refused frames as the
// connection's own frame limit (client.debt), so that a connection that keeps going past
// either is closed with 1008 once it is over FrameBurst: the first refusals tell a
// well-behaved client to slow down, the rest are abuse.
func (c *client) allowCommandOfUser(ctx context.Context, cmd command) bool {
	l := c.s.cfg.Limiter
	if l == nil {
		return true
	}
	kind, lim, ok := l.commandLimit(cmd)
	if !ok {
		return true
	}
	err := l.allow(ctx, kind, "user:"+c.user, lim)
	var rl *rateLimitedError
	if !errors.As(err, &rl) {
		if err != nil {
			c.sendError(cmd.reference(), err)
			return false
		}
		return true
	}
	c.s.countLimited(err)
	if c.debt++; c.debt > float64(c.s.cfg.FrameBurst) {
		c.close(disconnectRateLimited) // counted once, whatever follows
		return false
	}
	c.send(encodeFrame(limitedFrame{Type: "error", Ref: cmd.reference(), Code: codeRateLimited, Message: rl.Error(),
		RetryAfterMS: max(rl.retryAfter.Milliseconds(), 1)}))
	return false
}
