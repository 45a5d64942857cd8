package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/switchboard-dev/switchboard/client"
	"github.com/switchboard-dev/switchboard/internal/wsclient"
)

// The rpc scenario with --frame history asks for pages of a room's history instead of
// calling the backend: the same connections, pacing and in-flight slots, the frame
// {"type":"history","room":R,"limit":N,"ref":"<slot>.<seq>"} and its answer. It measures
// what a client opening a room pays (issue 17: pages of 50 at 1,000 requests/s).

// Frames the rpc scenario can send.
const (
	frameRPC     = "rpc"
	frameHistory = "history"
)

// historyFill is how many messages a history run posts to its room before it starts
// asking, so that every page is full: at least two pages' worth.
func historyFill(limit int) int { return max(2*limit, 100) }

// prepareHistory makes every connection's user a member of cfg.room and fills the room's
// history; the caller empties the room afterwards with the returned function.
func prepareHistory(ctx context.Context, cfg config, n *nodes, prog *progress, ids []string) (func(), error) {
	prog.printf("adding %d members to room %s and posting %d messages", len(ids), cfg.room, historyFill(cfg.historyLimit))
	if err := changeMembers(ctx, n, true, cfg.room, ids); err != nil {
		return nil, fmt.Errorf("adding members to %s: %w", cfg.room, err)
	}
	empty := func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := changeMembers(ctx, n, false, cfg.room, ids); err != nil {
			prog.printf("warning: emptying room %s: %v", cfg.room, err)
		}
	}
	api := n.apiClient(0)
	for i := range historyFill(cfg.historyLimit) {
		body := appendPayload(nil, time.Now().UnixNano(), int64(i), cfg.payloadBytes)
		if _, err := api.SendToRoom(ctx, cfg.room, client.RawJSON(body)); err != nil {
			empty()
			return nil, fmt.Errorf("filling the history of %s: %w", cfg.room, err)
		}
	}
	return empty, nil
}

// appendHistoryFrame appends {"type":"history","room":R,"limit":N,"ref":"<slot>.<seq>"}.
func appendHistoryFrame(b []byte, room string, limit, slot int, seq int64) []byte {
	b = append(b, `{"type":"history","room":"`...)
	b = append(b, room...)
	b = append(b, `","limit":`...)
	b = strconv.AppendInt(b, int64(limit), 10)
	b = append(b, `,"ref":"`...)
	b = strconv.AppendInt(b, int64(slot), 10)
	b = append(b, '.')
	b = strconv.AppendInt(b, seq, 10)
	return append(b, `"}`...)
}

// pageLength is how many messages a history answer holds; -1 for an answer that is not one.
func pageLength(f wsclient.Frame) int {
	var page struct {
		Messages []json.RawMessage `json:"messages"`
	}
	if json.Unmarshal(f.Raw, &page) != nil || page.Messages == nil {
		return -1
	}
	return len(page.Messages)
}
