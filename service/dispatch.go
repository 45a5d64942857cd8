package service

import (
	"context"
	"errors"
	"time"

	"github.com/lxzan/gws"

	"github.com/switchboard-dev/switchboard/events"
	"github.com/switchboard-dev/switchboard/subscriptions"
)

// commandTimeout bounds the Redis work one client frame may cause.
const commandTimeout = 10 * time.Second

// OnMessage answers a client message: a refusal by the frame rate limit, a frame that is
// not a JSON text frame or not a valid command gets an error frame; a command is carried
// out by dispatch.
func (h *wsHandler) OnMessage(conn *gws.Conn, msg *gws.Message) {
	defer msg.Close()
	c := clientOf(conn)
	// gws's own recovery (gws.Recovery) would log and carry on with the connection.
	defer c.recoverPanic("OnMessage")
	h.s.testPanic(c, "OnMessage")
	_ = conn.SetReadDeadline(time.Now().Add(h.s.cfg.ReadTimeout))
	if c.refusedNext() {
		c.send(encodeFrame(errorFrame{Type: "error", Code: codeRateLimited, Message: "too many frames; slow down"}))
		return
	}
	if msg.Opcode != gws.OpcodeText {
		c.send(encodeFrame(errorFrame{Type: "error", Code: codeBadRequest, Message: "frames must be JSON text frames"}))
		return
	}
	cmd, err := decodeFrame(msg.Bytes(), h.s.cfg.MaxMessageBytes)
	if err != nil {
		var fe *frameError
		if errors.As(err, &fe) {
			c.send(encodeFrame(errorFrame{Type: "error", Ref: fe.ref, Code: fe.code, Message: fe.message}))
		}
		return
	}
	h.s.dispatch(c, cmd)
}

// dispatch carries out one client command, once its user's limit allows it, and answers
// it with an ack or an error frame.
func (s *Server) dispatch(c *client, cmd command) {
	ctx, cancel := context.WithTimeout(s.ctx, commandTimeout)
	defer cancel()
	if !c.allowCommandOfUser(ctx, cmd) {
		return
	}
	var ack ackFrame
	var err error
	switch cmd := cmd.(type) {
	case sendDM:
		ack, err = s.sendDM(ctx, c, cmd)
	case sendRoom:
		ack, err = s.sendRoom(ctx, c, cmd)
	case joinCmd:
		if err = s.mayJoin(ctx, c, cmd.room); err == nil {
			err = s.changeMembership(ctx, cmd.room, c.user, true, events.ByClient)
		}
	case leaveCmd:
		err = s.changeMembership(ctx, cmd.room, c.user, false, events.ByClient)
	case eventCmd:
		// The ack means the event is queued in Redis, not that the backend saw it.
		err = s.emitClientEvent(ctx, c, cmd)
	case presenceCmd:
		if err = s.roomPresence(ctx, c, cmd); err == nil {
			return
		}
	case historyCmd:
		// Answered by its history frame, or by an error.
		if err = s.history(ctx, c, cmd); err == nil {
			return
		}
	case refreshCmd:
		err = s.refresh(ctx, c, cmd)
	case rpcCmd:
		// Answered later, by its result frame, or now by an error.
		if err = s.startRPC(c, cmd); err == nil {
			return
		}
	}
	if err != nil {
		c.sendError(cmd.reference(), err)
		return
	}
	ack.Type, ack.Ref = "ack", cmd.reference()
	c.send(encodeFrame(ack))
}

// sendDM delivers a client's direct message and the sender's own copy of it. The ack
// carries the recipient's id and the copy's ("copy_id"); a copy that failed after the
// recipient's message was stored (Redis Cluster, see PublishDM) is acked with "copy":false,
// logged and counted.
func (s *Server) sendDM(ctx context.Context, c *client, cmd sendDM) (ackFrame, error) {
	if err := s.mayDM(ctx, c, cmd.to); err != nil {
		return ackFrame{}, err
	}
	if cmd.ephemeral {
		// Published only: no id, no copy, nothing to resume.
		return ackFrame{}, s.hub.PublishEphemeral(ctx, cmd.to, subscriptions.Envelope{From: c.user, Data: cmd.data})
	}
	res, err := s.hub.PublishDM(ctx, cmd.to, subscriptions.Envelope{From: c.user, Data: cmd.data})
	if err != nil && !errors.Is(err, subscriptions.ErrNotReplicated) {
		return ackFrame{}, err
	}
	s.metrics.messagesIn.WithLabelValues("ws", "direct").Inc()
	ack := ackFrame{ID: res.ID.String(), Replicated: replicated(err)}
	switch {
	case res.CopyErr != nil:
		s.metrics.copyFailures.Inc()
		s.log.Warn("a direct message reached its recipient but the sender's copy failed", "user", c.user, "to", cmd.to, "id", ack.ID, "err", res.CopyErr)
		ack.Copy = new(bool)
	case !res.CopyID.IsZero():
		ack.CopyID = res.CopyID.String()
	}
	return ack, nil
}

func (s *Server) sendRoom(ctx context.Context, c *client, cmd sendRoom) (ackFrame, error) {
	res, err := s.hub.PublishRoomMessage(ctx, cmd.room, subscriptions.Envelope{From: c.user, Data: cmd.data},
		subscriptions.RoomSend{RequireMember: true, Ephemeral: cmd.ephemeral})
	if err != nil && !errors.Is(err, subscriptions.ErrNotReplicated) {
		return ackFrame{}, err
	}
	s.metrics.messagesIn.WithLabelValues("ws", "room").Inc()
	return ackFrame{Recipients: &res.Recipients, HistoryID: historyID(res.HistoryID), Replicated: replicated(err)}, nil
}

func (s *Server) emitClientEvent(ctx context.Context, c *client, cmd eventCmd) error {
	if s.cfg.Events == nil {
		return errBadRequest(codeBadRequest, "this server has no backend for events (--webhook-url)")
	}
	return s.cfg.Events.Emit(ctx, events.Event{Type: events.ClientEvent, User: c.user, Name: cmd.name, Data: cmd.data})
}

// sendError answers a failed frame with the error frame that classify gives err.
func (c *client) sendError(ref string, err error) {
	ae := classify(err)
	c.send(encodeFrame(errorFrame{Type: "error", Ref: ref, Code: ae.code, Message: ae.message, Status: ae.backendStatus}))
}
